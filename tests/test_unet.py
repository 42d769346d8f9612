"""SongUNet (DDPM++ / NCSN++): exact parameter counts and a tiny real forward pass."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genmod.nets import unet
from genmod.nets.unet import SongUNet, ddpmpp_cifar10, ncsnpp_cifar10

jax.config.update("jax_disable_most_optimizations", True)

# Parameter counts of NVlabs/edm's PyTorch SongUNet (training/networks.py @ 0a2ff34),
# obtained once by building the original networks with torch 2.13 (CPU) using EDM's train.py
# settings for --arch=ddpmpp / --arch=ncsnpp at 32x32x3, augment_dim=0, and summing
# p.numel() over model.parameters() (the Fourier `freqs` and `resample_filter` buffers are
# not parameters). With label_dim=10 they are EDM's reported 55.73M / 56.40M.
EDM_COUNTS = {
    ("ddpmpp", 0): 55_732_739,
    ("ddpmpp", 10): 55_734_147,
    ("ncsnpp", 0): 56_395_523,
    ("ncsnpp", 10): 56_398_339,
}
PRESETS = {"ddpmpp": ddpmpp_cifar10, "ncsnpp": ncsnpp_cifar10}


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("arch,label_dim", sorted(EDM_COUNTS))
def test_param_count_matches_edm(arch, label_dim):
    net = SongUNet(img_resolution=32, in_channels=3, out_channels=3, label_dim=label_dim,
                   **PRESETS[arch]())
    x = jnp.zeros((1, 32, 32, 3))
    y = jnp.zeros((1, label_dim)) if label_dim else None
    shapes = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), x, jnp.zeros((1,)), y))
    assert set(shapes) == {"params"}  # no buffers / extra collections
    assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(shapes))
    assert _count(shapes["params"]) == EDM_COUNTS[(arch, label_dim)]


TINY = dict(img_resolution=8, in_channels=3, out_channels=3, label_dim=10, model_channels=16,
            channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,), dropout=0.2)
VARIANTS = {
    "ddpmpp": dict(embedding_type="positional", channel_mult_noise=1, encoder_type="standard",
                   decoder_type="standard", resample_filter=(1, 1)),
    # NCSN++ features plus the skip decoder, to exercise every resampling path.
    "ncsnpp_skip": dict(embedding_type="fourier", channel_mult_noise=2, encoder_type="residual",
                        decoder_type="skip", resample_filter=(1, 3, 3, 1)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_tiny_forward(variant):
    net = SongUNet(**TINY, **VARIANTS[variant])
    b = 2
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((b, 8, 8, 3)), jnp.float32)
    t = jnp.asarray([0.3, -1.2], jnp.float32)
    y = jax.nn.one_hot(jnp.asarray([1, 7]), 10)
    params = jax.jit(net.init)(jax.random.PRNGKey(0), x, t, y)["params"]
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(params))
    # The 1e-5 "init_zero" layers make a fresh net nearly constant; perturb all weights so
    # the checks below are not dominated by rounding (numpy: cheaper than jax.random here).
    params = jax.tree_util.tree_map(
        lambda p: jnp.asarray(p + 0.1 * rng.standard_normal(p.shape), jnp.float32), params)

    @jax.jit(static_argnums=3)
    def fwd(params, y, key, train):
        return net.apply({"params": params}, x, t, y, train=train, return_bottleneck=True,
                         rngs={"dropout": key})
    k0, k1 = jax.random.PRNGKey(10), jax.random.PRNGKey(11)

    out, bott = fwd(params, y, k0, False)
    assert out.shape == (b, 8, 8, 3) and out.dtype == jnp.float32
    assert bott.shape == (b, 4, 4, 32)
    assert np.isfinite(np.asarray(out)).all() and np.isfinite(np.asarray(bott)).all()
    assert np.abs(np.asarray(out)).max() > 1e-3

    # Eval mode is deterministic and ignores the dropout key; so is the plain call.
    np.testing.assert_array_equal(np.asarray(fwd(params, y, k1, False)[0]), np.asarray(out))
    plain = jax.jit(lambda p: net.apply({"params": p}, x, t, y))(params)  # defaults: eval
    np.testing.assert_allclose(np.asarray(plain), np.asarray(out), rtol=1e-4, atol=1e-5)

    # Train mode: same key -> identical, other key -> different, and differs from eval.
    a0 = np.asarray(fwd(params, y, k0, True)[0])
    np.testing.assert_array_equal(np.asarray(fwd(params, y, k0, True)[0]), a0)
    assert not np.allclose(np.asarray(fwd(params, y, k1, True)[0]), a0)
    assert not np.allclose(a0, np.asarray(out))

    # Class conditioning matters.
    y2 = jax.nn.one_hot(jnp.asarray([4, 2]), 10)
    assert not np.allclose(np.asarray(fwd(params, y2, k0, False)[0]), np.asarray(out))


def test_label_dropout_drops_labels():
    net = SongUNet(**dict(TINY, dropout=0.0, label_dropout=1.0), **VARIANTS["ddpmpp"])
    x = jnp.ones((2, 8, 8, 3))
    t = jnp.asarray([0.5, 0.1])
    y = jax.nn.one_hot(jnp.asarray([3, 5]), 10)
    variables = jax.jit(net.init)(jax.random.PRNGKey(0), x, t, y)
    fwd = jax.jit(lambda y, train: net.apply(variables, x, t, y, train=train,
                                             rngs={"dropout": jax.random.PRNGKey(1)}),
                  static_argnums=1)
    dropped = fwd(y, True)
    np.testing.assert_array_equal(np.asarray(dropped), np.asarray(fwd(jnp.zeros_like(y), False)))
    assert not np.array_equal(np.asarray(dropped), np.asarray(fwd(y, False)))


def test_bfloat16_compute_keeps_float32_params_and_output():
    net = SongUNet(**TINY, **VARIANTS["ncsnpp_skip"], dtype=jnp.bfloat16)
    x, t, y = jnp.zeros((2, 8, 8, 3)), jnp.zeros((2,)), jnp.zeros((2, 10))
    variables = jax.eval_shape(net.init, jax.random.PRNGKey(0), x, t, y)
    assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(variables))
    out, bott = jax.eval_shape(lambda v: net.apply(v, x, t, y, return_bottleneck=True), variables)
    assert out.dtype == jnp.float32 and out.shape == (2, 8, 8, 3)
    assert bott.dtype == jnp.float32 and bott.shape == (2, 4, 4, 32)


def test_conv1x1_derivatives_equal_the_convolutions():
    """conv1x1's matmul JVP (and the VJP JAX transposes from it) equal lax's convolution's, in
    forward mode (sCM / MeanFlow), reverse mode and forward-over-reverse."""
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 16))
    w = jax.random.normal(jax.random.PRNGKey(1), (1, 1, 16, 24))
    out = []
    for f in (lambda x, w: unet._conv(x, w, 0), unet.conv1x1):
        loss = lambda x, w: (jnp.sin(f(x, w)) ** 2).sum()
        out.append([jax.jvp(f, (x, w), (0.3 * x, 0.2 * w))[1], jax.jvp(lambda x: f(x, w), (x,), (x,))[1],
                    *jax.grad(loss, (0, 1))(x, w), jax.jvp(jax.grad(loss), (x, w), (x, w))[1]])
    for a, b in zip(*out):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-4 * float(jnp.abs(a).max()))


@pytest.mark.parametrize("shape,dtype", [((2, 4, 4, 128), jnp.float32), ((2, 8, 8, 32), jnp.bfloat16)])
def test_group_norm_equals_flax(shape, dtype):
    """unet.GroupNorm (statistics summed per channel first) has flax's parameters, output dtype,
    values and gradients, on inputs whose mean is large next to their spread."""
    import flax.linen as nn

    x = (3 * jax.random.normal(jax.random.PRNGKey(0), shape) + 5).astype(dtype)
    groups = min(32, shape[-1] // 4)
    ref = nn.GroupNorm(num_groups=groups, epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32,
                       use_fast_variance=False)
    ours = unet.GroupNorm(num_groups=groups, epsilon=1e-5, dtype=dtype)
    init = [m.init(jax.random.PRNGKey(0), x) for m in (ref, ours)]
    assert jax.tree.map(jnp.shape, init[0]) == jax.tree.map(jnp.shape, init[1])
    v = {"params": {"scale": 1 + jax.random.normal(jax.random.PRNGKey(1), shape[-1:]),
                    "bias": jax.random.normal(jax.random.PRNGKey(2), shape[-1:])}}
    tol = 1e-5 if dtype == jnp.float32 else 1e-2
    loss = lambda m: lambda x, v: jnp.sum(jnp.sin(m.apply(v, x).astype(jnp.float32)))  # noqa: E731
    for m_ref, m_ours in ((ref.apply(v, x), ours.apply(v, x)),
                          *zip(jax.grad(loss(ref), (0, 1))(x, v), jax.grad(loss(ours), (0, 1))(x, v))):
        for a, b in zip(jax.tree.leaves(m_ref), jax.tree.leaves(m_ours)):
            assert a.dtype == b.dtype
            a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol * float(np.abs(a).max()))
