"""Rectified flow / conditional flow matching, data at t = 1 everywhere.

x_t = (1 - (1 - sigma_min) t) x0 + t x1, v* = x1 - (1 - sigma_min) x0. sigma_min = 0 gives
the rectified-flow straight line; CrossFlow uses 1e-5.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def _bcast(v, x):
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def interpolate(x0, x1, t, sigma_min=0.0):
    t = _bcast(t, x1)
    return (1 - (1 - sigma_min) * t) * x0 + t * x1


def velocity(x0, x1, sigma_min=0.0):
    return x1 - (1 - sigma_min) * x0


def sample_t(key, n, kind="logit_normal", mean=0.0, std=1.0):
    if kind == "logit_normal":
        return jax.nn.sigmoid(mean + std * jax.random.normal(key, (n,)))
    if kind == "uniform":
        return jax.random.uniform(key, (n,))
    raise ValueError(f"unknown t distribution {kind!r}: use logit_normal or uniform")


def fm_loss(v: Callable, x0, x1, t, sigma_min=0.0):
    """Per-sample mean squared velocity error."""
    err = (v(interpolate(x0, x1, t, sigma_min), t) - velocity(x0, x1, sigma_min)) ** 2
    return err.reshape(err.shape[0], -1).mean(-1)


def ode_sampler(v: Callable, x0, num_steps: int, solver="euler"):
    """Integrate dx/dt = v(x, t) from t=0 (source) to t=1 (data) on a uniform grid.
    Heun's last step is plain Euler (2N - 1 calls); Euler makes N calls."""
    ts = jnp.linspace(0.0, 1.0, num_steps + 1, dtype=x0.dtype)

    def step(x, t):
        t_cur, t_next = t
        d = v(x, t_cur)
        x_next = x + (t_next - t_cur) * d
        if solver == "heun":
            x_next = x + (t_next - t_cur) * 0.5 * (d + v(x_next, t_next))
        return x_next, None

    if solver not in ("euler", "heun"):
        raise ValueError(f"unknown solver {solver!r}: use euler or heun")
    x, _ = jax.lax.scan(step, x0, (ts[:-2], ts[1:-1]))
    return x + (ts[-1] - ts[-2]) * v(x, ts[-2])
