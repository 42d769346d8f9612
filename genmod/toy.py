"""2-D test-bed: mixtures with an exact EDM denoiser (the ring, the grid, any JSON file, a seeded
random family), other toy sets, and the sample-quality measures of the robustness benchmark."""
from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """Isotropic Gaussian mixture: component k ~ N(means[k], stds[k]^2 I), weight weights[k]."""

    means: np.ndarray
    stds: np.ndarray
    weights: np.ndarray

    @classmethod
    def ring(cls, k=8, radius=0.8, std=0.08):
        a = 2 * np.pi * np.arange(k) / k
        return cls(np.stack([radius * np.cos(a), radius * np.sin(a)], 1), np.full(k, std), np.full(k, 1.0 / k))

    @classmethod
    def grid(cls, k=3, spacing=0.7, std=0.08):
        c = (np.arange(k) - (k - 1) / 2) * spacing
        m = np.stack(np.meshgrid(c, c), -1).reshape(-1, 2)
        return cls(m, np.full(len(m), std), np.full(len(m), 1.0 / len(m)))

    @classmethod
    def from_json(cls, path):
        """``{"means": [[x, y], ...], "stds": s or [s_k], "weights": [w_k]}`` (weights default
        uniform and are normalised)."""
        try:
            with open(path) as f:
                d = json.load(f)
            means = np.asarray(d["means"], np.float64)
            k = len(means)
            stds = np.broadcast_to(np.asarray(d.get("stds", 0.08), np.float64), (k,)).copy()
            w = np.asarray(d.get("weights", np.ones(k)), np.float64)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"mixture file {path}: {type(e).__name__}: {e} (keys: means [[x, y], ...], "
                             f"stds (one number or a list), weights)") from None
        if means.ndim != 2 or k == 0 or w.shape != (k,) or (stds <= 0).any() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"mixture file {path}: need means (K, d), K positive stds and K non-negative weights; "
                             f"got means {means.shape}, stds {stds.shape}, weights {w.shape}")
        return cls(means, stds, w / w.sum())

    @classmethod
    def random(cls, seed, dim=2):
        """The seeded random family (robustness benchmark): 3-10 modes, per-mode std 0.03-0.12,
        one rare mode of 2-5% mass, the rest Dirichlet(2) above a 5% floor, and a spacing drawn
        log-uniformly from close (0.35) to far (1.2) but never so close that two modes' 4-std
        balls touch. Centred on the weighted mean; scaled to |x| <~ 2 (EDM's sigma_data 0.5)."""
        rng = np.random.default_rng([20261203, seed])
        k = int(rng.integers(3, 11))
        stds = rng.uniform(0.03, 0.12, k)
        spacing = float(np.exp(rng.uniform(np.log(0.35), np.log(1.2))))
        r, means = spacing * np.sqrt(k) * 0.6, []
        for i in range(k):
            for tries in range(100_000):
                m = rng.uniform(-r, r, dim)
                if all(np.linalg.norm(m - q) >= max(spacing, 4.5 * (stds[i] + stds[j])) for j, q in enumerate(means)):
                    break
                if tries % 200 == 199:
                    r *= 1.05
            means.append(m)
        rare = rng.uniform(0.02, 0.05)
        w = 0.05 + (1 - rare - 0.05 * (k - 1)) * rng.dirichlet(np.full(k - 1, 2.0))
        w = np.insert(w, int(rng.integers(k)), rare)
        means = np.asarray(means)
        means -= (w[:, None] * means).sum(0)
        return cls(means, stds, w)

    def sample(self, key, n):
        """Samples with a fixed number per component (largest remainder), for low-variance tests."""
        kc, kn = jax.random.split(key)
        comp = jax.random.choice(kc, len(self.weights), (n,), p=jnp.asarray(self.weights))
        return self.means[comp] + self.stds[comp][:, None] * jax.random.normal(kn, (n, self.means.shape[1]))

    def sample_np(self, seed, n):
        rng = np.random.default_rng(seed)
        comp = rng.choice(len(self.weights), n, p=self.weights)
        x = self.means[comp] + self.stds[comp][:, None] * rng.standard_normal((n, self.means.shape[1]))
        return x.astype(np.float32), comp

    def denoiser(self, x, sigma):
        """Exact D*(x; sigma) = E[y | y + sigma n = x], closed form (posterior mean)."""
        sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])[:, None, None]
        mu = jnp.asarray(self.means, x.dtype)[None]                 # (1, K, d)
        s2 = jnp.asarray(self.stds, x.dtype)[None, :, None] ** 2    # (1, K, 1)
        var = s2 + sigma**2                                          # (B, K, 1)
        d = x.shape[-1]
        diff = x[:, None, :] - mu                                    # (B, K, d)
        logp = (jnp.log(jnp.asarray(self.weights, x.dtype))[None] - 0.5 * d * jnp.log(var[..., 0])
                - 0.5 * (diff**2).sum(-1) / var[..., 0])
        r = jax.nn.softmax(logp, axis=-1)[..., None]                 # (B, K, 1)
        return (r * (mu + s2 / var * diff)).sum(1)

    def component(self, x):
        """Nearest-mean component index of each point (for mode-mass measurements)."""
        return np.argmin(((np.asarray(x)[:, None] - self.means[None]) ** 2).sum(-1), 1)


def heun_reference(mix, key, n, nfe=35):
    """``n`` samples of the exact teacher's deterministic Heun sampler (``nfe`` denoiser calls):
    the best a distilled student of that teacher can do at that NFE."""
    from genmod import edm

    z = jax.random.normal(key, (n, mix.means.shape[1]))
    sig = edm.karras_sigmas(edm.nfe_to_steps(nfe))
    return np.asarray(jax.jit(lambda z: edm.heun_sampler(mix.denoiser, z, sig))(z))


def mode_stats(mix, x, radius=4.0):
    """(recall per mode, off-mode mass) of samples ``x``: mode k is recovered when at least half
    of its true mass lies within ``radius`` of its stds of its mean; off-mode: the fraction
    farther than ``radius`` stds from every mean."""
    x = np.asarray(x, np.float64)
    d = np.sqrt(((x[:, None] - mix.means[None]) ** 2).sum(-1)) / mix.stds[None]   # (n, K) in stds
    inside = d <= radius
    frac = inside.mean(0)
    return frac >= 0.5 * mix.weights, float((~inside.any(1)).mean())


def checkerboard(seed, n, k=4):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (4 * n, 2))
    keep = (np.floor((x[:, 0] + 1) * k / 2) + np.floor((x[:, 1] + 1) * k / 2)) % 2 == 0
    return x[keep][:n].astype(np.float32)


def two_moons(seed, n, noise=0.05):
    from sklearn.datasets import make_moons

    x, _ = make_moons(n, noise=noise, random_state=seed)
    return ((x - [0.5, 0.25]) / 1.2).astype(np.float32)


def energy_distance(x, y, max_points=2000):
    """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic, >= 0; 0 iff same law)."""
    x = np.asarray(x, np.float64)[:max_points]
    y = np.asarray(y, np.float64)[:max_points]

    def mean_dist(a, b):
        return np.sqrt(np.maximum(((a[:, None] - b[None]) ** 2).sum(-1), 0)).mean()

    return float(2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y))
