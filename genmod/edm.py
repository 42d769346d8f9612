"""EDM (Karras et al. 2022): preconditioning, loss and samplers, in the paper's symbols.

Everything here is a pure function of a denoiser ``D(x, sigma) -> x0_hat``; networks are
wrapped by :class:`EDMPrecond`, so any backbone ``F(x_in, c_noise, labels)`` works.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def precond(sigma, sigma_data=0.5, sigma_min=0.0):
    """(c_skip, c_out, c_in, c_noise). ``sigma_min > 0`` gives the consistency-model
    boundary shift (c_skip=1, c_out=0 at sigma_min); 0 gives plain EDM."""
    s2, d2 = sigma**2, sigma_data**2
    c_skip = d2 / ((sigma - sigma_min) ** 2 + d2)
    c_out = (sigma - sigma_min) * sigma_data / jnp.sqrt(s2 + d2)
    c_in = 1.0 / jnp.sqrt(s2 + d2)
    c_noise = 0.25 * jnp.log(sigma)
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma, sigma_data=0.5):
    """lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma * sigma_d)^2, so lambda * c_out^2 = 1."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def _bcast(v, x):
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def _precondition(net, x, sigma, labels, coeffs, train, kw):
    """D = c_skip x + c_out F(c_in x, c_noise, labels); passes (output, features) through."""
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1])
    c_skip, c_out, c_in, c_noise = coeffs(sigma)
    F = net(_bcast(c_in, x) * x, c_noise, labels, train=train, **kw)
    if isinstance(F, tuple):  # backbone returned (output, features)
        F, feats = F
        return _bcast(c_skip, x) * x + _bcast(c_out, x) * F.astype(x.dtype), feats
    return _bcast(c_skip, x) * x + _bcast(c_out, x) * F.astype(x.dtype)


class EDMPrecond(nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x, c_noise): a wrapper around any backbone."""

    net: nn.Module
    sigma_data: float = 0.5
    sigma_min: float = 0.0  # >0 for consistency models (boundary condition f(x, sigma_min) = x)

    def __call__(self, x, sigma, labels=None, *, train=False, **kw):
        return _precondition(self.net, x, sigma, labels,
                             lambda s: precond(s, self.sigma_data, self.sigma_min), train, kw)


class VPPrecond(nn.Module):
    """EDM's VP preconditioning (DDPM++ teachers): c_skip 1, c_out -sigma, c_in 1/sqrt(sigma^2+1),
    c_noise (M-1) t(sigma) on the VP schedule. For loading published VP networks; genmod trains
    with EDMPrecond."""

    net: nn.Module
    beta_d: float = 19.9
    beta_min: float = 0.1
    M: int = 1000

    def sigma_inv(self, sigma):
        """t with sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1), in EDM's op order."""
        return (jnp.sqrt(self.beta_min ** 2 + 2 * self.beta_d * jnp.log(1 + sigma ** 2)) - self.beta_min) / self.beta_d

    def __call__(self, x, sigma, labels=None, *, train=False, **kw):
        def coeffs(s):
            return jnp.ones_like(s), -s, 1 / jnp.sqrt(s ** 2 + 1), (self.M - 1) * self.sigma_inv(s)
        return _precondition(self.net, x, sigma, labels, coeffs, train, kw)


class VEPrecond(nn.Module):
    """EDM's VE preconditioning (NCSN++ teachers): c_skip 1, c_out sigma, c_in 1,
    c_noise log(sigma / 2). For loading published VE networks."""

    net: nn.Module

    def __call__(self, x, sigma, labels=None, *, train=False, **kw):
        def coeffs(s):
            return jnp.ones_like(s), s, jnp.ones_like(s), jnp.log(0.5 * s)
        return _precondition(self.net, x, sigma, labels, coeffs, train, kw)


PRECONDS = ("edm", "vp", "ve")


def make_precond(kind: str, net: nn.Module, sigma_data: float = 0.5, **kw) -> nn.Module:
    """``kind`` in PRECONDS; ``kw``: VPPrecond's beta_d / beta_min / M. All three keep the
    backbone under ``params['net']``."""
    if kind == "edm":
        return EDMPrecond(net, sigma_data=sigma_data, **kw)
    if kind == "vp":
        return VPPrecond(net, **kw)
    if kind == "ve":
        return VEPrecond(net, **kw)
    raise ValueError(f"unknown preconditioner {kind!r}; valid: {', '.join(PRECONDS)}")


def sample_sigma(key, n, P_mean=-1.2, P_std=1.2):
    """ln sigma ~ N(P_mean, P_std^2)."""
    return jnp.exp(P_mean + P_std * jax.random.normal(key, (n,)))


def edm_loss(D: Callable, y, key, P_mean=-1.2, P_std=1.2, sigma_data=0.5):
    """Per-sample lambda(sigma) ||D(y + sigma n; sigma) - y||^2 (summed over pixels)."""
    k_sigma, k_n = jax.random.split(key)
    sigma = sample_sigma(k_sigma, y.shape[0], P_mean, P_std)
    n = _bcast(sigma, y) * jax.random.normal(k_n, y.shape, y.dtype)
    err = (D(y + n, sigma) - y) ** 2
    return loss_weight(sigma, sigma_data) * err.reshape(err.shape[0], -1).sum(-1)


def karras_sigmas(num_steps=18, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """t_0 > ... > t_{N-1} = sigma_min, then t_N = 0 (length N + 1)."""
    i = np.arange(num_steps, dtype=np.float64)
    t = (sigma_max ** (1 / rho) + i / max(num_steps - 1, 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return np.append(t, 0.0)


def heun_sampler(D: Callable, z, sigmas, euler_only=False):
    """Deterministic EDM sampler (Algorithm 1) from x = sigma_0 z. 2N-1 calls of D for N
    steps (N for Euler); the last step, to sigma_N = 0, is Euler, so D never sees sigma=0."""
    sigmas = jnp.asarray(sigmas, z.dtype)
    x = sigmas[0] * z

    def step(x, t):
        t_cur, t_next = t
        d = (x - D(x, t_cur)) / t_cur
        x_next = x + (t_next - t_cur) * d
        if not euler_only:
            d_next = (x_next - D(x_next, t_next)) / t_next
            x_next = x + (t_next - t_cur) * 0.5 * (d + d_next)
        return x_next, None

    x, _ = jax.lax.scan(step, x, (sigmas[:-2], sigmas[1:-1]))
    t_cur = sigmas[-2]
    return x + (sigmas[-1] - t_cur) * (x - D(x, t_cur)) / t_cur


def nfe_to_steps(nfe: int, heun: bool = True) -> int:
    """Number of grid steps N that spends ``nfe`` denoiser calls (Heun: 2N - 1)."""
    return (nfe + 1) // 2 if heun else nfe
