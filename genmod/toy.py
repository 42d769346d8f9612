"""2-D test-bed: mixtures with an exact EDM denoiser, other toy sets, energy distance."""
from __future__ import annotations

import dataclasses

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
