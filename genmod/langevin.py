"""Unadjusted Langevin dynamics as a pure function (``lax.fori_loop``, jittable, vmappable).

The score is differentiated inside the loop body: on XLA:CPU a convolutional energy should use
``genmod.nets.conv``, or its input gradient runs on XLA's naive convolution loop (3.5x slower)."""
from __future__ import annotations

import jax


def ula(score, y, noise, step2, n_steps: int):
    """``n_steps`` of y <- y + step2/2 * score(y) + sqrt(step2) * noise(i).

    ``score(y)`` is grad_y log p(y); ``noise(i)`` the standard normal draw of step ``i`` (the
    caller picks keys, so a chain depends only on the keys it is given); ``step2`` (the squared
    step size) broadcasts against ``y``, e.g. one value per sample. For a Gaussian target
    N(mu, v) the chain's stationary law is N(mu, v / (1 - step2 / (4 v))) (discretisation bias).
    """
    body = lambda i, y: y + 0.5 * step2 * score(y) + step2**0.5 * noise(i)  # noqa: E731
    return jax.lax.fori_loop(0, n_steps, body, y)
