"""genmod.nets.conv: lax's convolution in value, gradient and JVP, with gradients that XLA:CPU
can run as Eigen convolutions inside loop bodies (where its canonicalising pass does not go)."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from genmod.nets import conv, ebm

CANONICAL = "b01f_01io->b01f"  # NHWC x HWIO -> NHWC, the form XLA:CPU hands to Eigen


def conv_labels(fn, *args) -> list:
    return re.findall(r" convolution\(.*?dim_labels=([^,\s]+)", jax.jit(fn).lower(*args).compile().as_text())


@pytest.mark.parametrize("k,s,pad", [(3, 1, "SAME"), (3, 2, "SAME"), (4, 2, ((1, 1), (1, 1))), (4, 4, "VALID"),
                                     (1, 1, "VALID"), (3, 1, ((2, 0), (0, 1)))])
def test_value_gradients_and_jvp_match_lax(k, s, pad):
    rng = np.random.default_rng(k * 10 + s)
    x = jnp.asarray(rng.standard_normal((3, 11, 10, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 5, 7)), jnp.float32)
    ref = lambda x, w: lax.conv_general_dilated(x, w, (s, s), pad, dimension_numbers=conv.NHWC)  # noqa: E731
    new = lambda x, w: conv.conv_general_dilated(x, w, (s, s), pad, dimension_numbers=conv.NHWC)  # noqa: E731
    np.testing.assert_allclose(new(x, w), ref(x, w), rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.grad(lambda *p: jnp.sin(new(*p)).sum(), (0, 1))(x, w),
                    jax.grad(lambda *p: jnp.sin(ref(*p)).sum(), (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    t = (jnp.cos(x), jnp.sin(w))
    np.testing.assert_allclose(jax.jvp(new, (x, w), t)[1], jax.jvp(ref, (x, w), t)[1], rtol=1e-5, atol=1e-5)
    # a zero tangent (Langevin's input-only gradient) skips its term
    np.testing.assert_allclose(jax.jvp(lambda x: new(x, w), (x,), (t[0],))[1],
                               jax.jvp(lambda x: ref(x, w), (x,), (t[0],))[1], rtol=1e-5, atol=1e-5)


def test_other_convolutions_fall_back_to_lax():
    x = jnp.ones((2, 6, 6, 4))
    w = jnp.ones((3, 3, 1, 4))  # depthwise: feature groups
    kw = dict(dimension_numbers=conv.NHWC, feature_group_count=4, rhs_dilation=(2, 2))
    np.testing.assert_array_equal(conv.conv_general_dilated(x, w, (1, 1), "SAME", **kw),
                                  lax.conv_general_dilated(x, w, (1, 1), "SAME", **kw))


def test_gradients_inside_a_loop_are_canonical_convolutions():
    x, w = jnp.ones((4, 8, 8, 6)), jnp.ones((3, 3, 6, 6))
    pad = ((1, 1), (1, 1))

    def looped(grad_of):
        def body(c, i):
            g = jax.grad(lambda x, w: jnp.sin(conv.conv2d(x, w, (2, 2), pad)).sum(), grad_of)(x * i, w)
            return c + g.sum(), None
        return lambda x, w: lax.scan(body, 0.0, jnp.arange(1.0, 3.0))[0]

    for grad_of in (0, 1):  # the input gradient, the weight gradient
        labels = conv_labels(looped(grad_of), x, w)
        assert labels and set(labels) == {CANONICAL}, labels


def test_ebm_energy_is_unchanged_and_its_langevin_gradient_canonical(monkeypatch):
    """The conv EBM with genmod's convolution: nn.Conv's parameters and values, and its input
    gradient inside a fori_loop (a Langevin chain) compiles to canonical convolutions only."""
    net = ebm.energy((8, 8, 3), 0, ch=8, ch_mult=(1, 2), num_blocks=1)
    x, sig = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3)), jnp.ones((2,))
    v = net.init(jax.random.PRNGKey(1), x, sig)
    f = lambda y: net.apply(v, y, sig).sum()  # noqa: E731
    chain = lambda y: lax.fori_loop(0, 3, lambda i, y: y + 1e-3 * jax.grad(f)(y), y)  # noqa: E731
    assert set(conv_labels(chain, x)) == {CANONICAL}
    ours = jax.jit(lambda y: (f(y), jax.grad(f)(y)))(x)
    monkeypatch.setattr(conv, "conv_general_dilated", lax.conv_general_dilated)
    assert jax.tree.map(jnp.shape, net.init(jax.random.PRNGKey(1), x, sig)) == jax.tree.map(jnp.shape, v)
    for a, b in zip(ours, jax.jit(lambda y: (f(y), jax.grad(f)(y)))(x)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
