"""oneDNN convolutions (genmod/nets/onednn.py): equal to lax's in value and every derivative order,
built once and reused, and where genmod routes its convolutions."""
import logging
import shutil

import jax
import jax.numpy as jnp
import pytest

from genmod.eval.inception import Conv
from genmod.nets import onednn
from genmod.nets.unet import SongUNet


def _rel(a, b):
    return max(float(jnp.abs(u - v).max() / (jnp.abs(v).max() + 1e-30))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_available_wherever_its_wheels_and_a_compiler_are():
    """The dev install brings the wheels, so CI runs the oneDNN path, not the fallback."""
    expect = onednn._find_onednn() is not None and (shutil.which("c++") or shutil.which("g++"))
    assert onednn.available() == bool(expect)


@pytest.mark.parametrize("strides,padding", [((1, 1), ((1, 1), (1, 1))), ((2, 2), ((0, 1), (1, 0))),
                                             ((1, 2), ((2, 2), (0, 0)))])
def test_value_and_derivatives_match_lax(strides, padding):
    k = jax.random.split(jax.random.key(0), 2)
    x, w = jax.random.normal(k[0], (3, 9, 10, 5)), jax.random.normal(k[1], (3, 3, 5, 7))
    f = lambda x, w: onednn.conv(x, w, strides=strides, padding=padding)
    r = lambda x, w: onednn.ref_conv(x, w, strides=strides, padding=padding)
    loss = lambda c: lambda x, w: jnp.sum(jnp.sin(c(x, w)))
    grad2 = lambda c: jax.grad(lambda x, w: jnp.sum(jax.grad(loss(c))(x, w) ** 2), (0, 1))
    grad_jvp = lambda c: jax.grad(lambda x, w: jnp.sum(jax.jvp(lambda x: c(x, w), (x,), (jnp.cos(x),))[1] ** 2), (0, 1))
    scan = lambda c: lambda x, w: jax.lax.scan(lambda h, _: (h * 0.5, jax.grad(loss(c), 1)(h, w)), x, None, 2)[1]
    xs, ws = jnp.stack([x, -x]), jnp.stack([w, 2 * w])
    cases = {
        "value": lambda c: c(x, w),
        "grad": lambda c: jax.grad(loss(c), (0, 1))(x, w),
        "jvp": lambda c: jax.jvp(c, (x, w), (jnp.cos(x), jnp.sin(w))),
        "grad of grad": lambda c: grad2(c)(x, w),
        "grad of jvp": lambda c: grad_jvp(c)(x, w),
        "vmap, shared w": lambda c: jax.vmap(c, (0, None))(xs, w),
        "vmap of grad, per-example w": lambda c: jax.vmap(jax.grad(loss(c), (0, 1)))(xs, ws),
        "grad in a scan": lambda c: scan(c)(x, w),
    }
    for name, case in cases.items():
        assert _rel(jax.jit(lambda: case(f))(), case(r)) < 2e-5, name
    hlo = jax.jit(jax.grad(loss(f), (0, 1))).lower(x, w).compile().as_text()
    assert all(t in hlo for t in onednn.TARGETS.values()) == onednn.available()
    assert (" convolution(" in hlo) != onednn.available()


def test_unet_and_inception_route_their_convolutions_here_with_the_same_numbers(monkeypatch):
    """On one CPU device genmod's U-Net (3x3 kernels; 1x1 stay dots) and the FID Inception's
    convolutions (strided, 1x7 / 7x1, padded) run on oneDNN, equal to the lax path."""
    monkeypatch.setattr(onednn, "one_device", lambda: True)
    net = SongUNet(img_resolution=8, in_channels=3, out_channels=3, model_channels=16, channel_mult=(1, 2),
                   num_blocks=1, attn_resolutions=(4,), dropout=0.0)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    t = jnp.array([0.3, -1.2])
    params = net.init(jax.random.key(1), x, t)
    loss = lambda p, x: jnp.sum(net.apply(p, x, t) ** 2)
    g = jax.jit(jax.value_and_grad(loss, (0, 1)))
    hlo = g.lower(params, x).compile().as_text()
    n_calls = hlo.count('custom_call_target="GenmodConv')
    ours = g(params, x)
    inc = Conv(features=8, kernel=(1, 7), strides=(2, 1), padding=(0, 3), cpu_tricks=True)
    xi = jax.random.normal(jax.random.key(2), (2, 11, 12, 5))
    pi = inc.init(jax.random.key(3), xi)
    inc_ours = jax.jit(inc.apply)(pi, xi)
    monkeypatch.setattr(onednn, "enabled", lambda x, w: False)
    g_lax = jax.jit(jax.value_and_grad(loss, (0, 1)))
    assert _rel(ours, g_lax(params, x)) < 2e-5
    assert _rel(inc_ours, jax.jit(inc.apply)(pi, xi)) < 2e-5
    # every 3x3 convolution, its input and its weight gradient (none is left to XLA)
    lax_hlo = g_lax.lower(params, x).compile().as_text()
    n_3x3 = lambda h: sum("window={size=3x3" in line for line in h.splitlines() if " convolution(" in line)
    assert n_3x3(lax_hlo) > 0
    if onednn.available():
        # lax: each one's forward and input gradient have 3x3 windows (the weight gradient's
        # window is the image); here: three custom calls each, and no 3x3 convolution left
        assert (n_calls, n_3x3(hlo)) == (3 * n_3x3(lax_hlo) // 2, 0)


def test_built_once_and_a_failed_build_leaves_nothing(monkeypatch, tmp_path, caplog):
    if not onednn.available():
        with pytest.raises(RuntimeError):
            onednn.build()
        return
    first = onednn.build()
    assert onednn.build() == first and first.exists()
    monkeypatch.setenv("GENMOD_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    with pytest.raises(RuntimeError, match="compiling"):
        onednn.build()
    assert list(tmp_path.iterdir()) == []
    with caplog.at_level(logging.INFO, logger=onednn.log.name):  # the wheels are there: say so loudly
        assert onednn.available.__wrapped__() is False
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    monkeypatch.setenv("GENMOD_ONEDNN", "0")
    assert onednn.available.__wrapped__() is False


def test_refuses_a_cache_others_could_write(monkeypatch, tmp_path):
    """The built library is loaded into the process: not from a world-writable cache or file."""
    if not onednn.available():
        with pytest.raises(RuntimeError):
            onednn.build()
        return
    built = onednn.build()
    monkeypatch.setenv("GENMOD_CACHE", str(tmp_path))
    first = tmp_path / built.name  # the same build, in a private cache (no second compile)
    shutil.copy2(built, first)
    first.chmod(0o755)
    assert onednn.build() == first
    tmp_path.chmod(0o777)
    with pytest.raises(RuntimeError, match="not loading a library"):
        onednn.build()
    tmp_path.chmod(0o770)  # group-writable passes (umask 002's directories)
    assert onednn.build() == first
    first.chmod(0o666)
    with pytest.raises(RuntimeError, match="not loading a library"):
        onednn.build()
    first.chmod(0o755)
    assert onednn.build() == first
