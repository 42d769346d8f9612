"""LPIPS-VGG parity with the ``lpips`` package (v0.1; never skipped: CI installs it), the
weights' loading (converter, asset cache) and cm.metric=lpips in a CT step.

The package's own ``LPIPS(net='vgg')`` is built without any download (random, seeded VGG-16 with
random biases), its trunk saved under torchvision's key names and its heads as lpips's vgg.pth,
both converted by ``python -m genmod.lpips`` and compared with the JAX network on image pairs:
random non-negative heads, and the published heads the wheel ships.
"""
from __future__ import annotations

import copy
import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genmod import lpips as lp
from genmod.eval.torch_reference import import_lpips, smooth_images
from tests.test_assets import env, server  # noqa: F401 - fixtures: a local HTTP server, a mirror table


LPIPS_JIT = jax.jit(lp.lpips, static_argnames="resize")  # one compile per input shape


def _images(n, size, seed):
    """Pairs in [-1, 1]: smooth images and, half of them, the same plus noise (small distances)."""
    a = smooth_images(n, size, size, seed).astype(np.float32) / 127.5 - 1
    b = smooth_images(n, size, size, seed + 1).astype(np.float32) / 127.5 - 1
    b[: n // 2] = a[: n // 2] + np.random.default_rng(seed).normal(0, 0.1, a[: n // 2].shape)
    return a, b.astype(np.float32)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """The lpips package's model (random VGG) and its weights converted two ways."""
    import torch

    torch.set_num_threads(2)
    lpips_pkg = import_lpips()
    vgg = sys.modules["torchvision.models"].vgg
    orig = lpips_pkg.pretrained_networks.tv.vgg16
    # the trunk only (torchvision's constructor would also build and initialise 124M classifier weights)
    lpips_pkg.pretrained_networks.tv.vgg16 = lambda **_: types.SimpleNamespace(features=vgg.make_layers(vgg.cfgs["D"]))
    try:
        model = lpips_pkg.LPIPS(net="vgg", pnet_rand=True, pretrained=False, verbose=False).eval()
    finally:
        lpips_pkg.pretrained_networks.tv.vgg16 = orig
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.net.named_parameters():  # He-normal kernels, small random biases
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g) * (0.05 if name.endswith("bias") else (2 / fan_in) ** 0.5))
        for lin in model.lins:  # random, non-negative heads
            w = lin.model[-1].weight
            w.copy_(torch.rand(w.shape, generator=g) * 2 / w.shape[1])
    tmp = tmp_path_factory.mktemp("lpips")
    trunk = {"features." + k.split(".", 1)[1]: v for k, v in model.net.state_dict().items()}  # sliceN.i -> features.i
    trunk["classifier.6.bias"] = torch.zeros(1000)  # torchvision's file has the classifier: dropped
    torch.save(trunk, tmp / "vgg16.pth")
    torch.save({k: v for k, v in model.state_dict().items() if k[:3] == "lin" and k[3].isdigit()}, tmp / "heads.pth")
    assert lp.main([str(tmp / "vgg16.pth"), str(tmp / "heads.pth"), "--out", str(tmp / "random.npz")]) == 0
    published = os.path.join(os.path.dirname(lpips_pkg.__file__), "weights", "v0.1", "vgg.pth")
    lp.convert([str(tmp / "vgg16.pth"), published], str(tmp / "published.npz"))
    models = {"random": model, "published": copy.deepcopy(model)}  # the same trunk, the wheel's heads
    models["published"].load_state_dict(torch.load(published, map_location="cpu", weights_only=True), strict=False)

    def torch_lpips(heads, a, b, resize=0):
        x, y = (torch.from_numpy(v).permute(0, 3, 1, 2).expand(-1, 3, -1, -1) for v in (a, b))  # grey -> RGB
        if resize:
            x, y = (torch.nn.functional.interpolate(v, size=resize, mode="bilinear", align_corners=False) for v in (x, y))
        with torch.no_grad():
            return models[heads](x, y).reshape(-1).double().numpy()

    return dict(torch=torch_lpips, random=str(tmp / "random.npz"), published=str(tmp / "published.npz"), tmp=tmp)


@pytest.mark.xdist_group("lpips")  # shares the module fixture: one worker builds it once
@pytest.mark.parametrize("heads,size,resize", [("random", 32, 0), pytest.param("random", 64, 0, marks=pytest.mark.slow),
                                               ("published", 64, 0), ("random", 16, 32)])
def test_matches_lpips_package(ref, heads, size, resize):
    a, b = _images(4, size, seed=size)
    if resize:  # and grey images, repeated to RGB
        a, b = a[..., :1], b[..., :1]
    want = ref["torch"](heads, a, b, resize)
    got = np.asarray(LPIPS_JIT(lp.load_params(ref[heads]), a, b, resize=resize))
    err, rel = np.abs(got - want).max(), (np.abs(got - want) / want).max()
    print(f"{heads} heads, {size}x{size}{f' -> {resize}' if resize else ''}: lpips {np.round(want, 4)}, "
          f"max abs error {err:.1e}, relative {rel:.1e}")
    assert want.min() > 1e-4 and want[: 2].max() < want[2:].min()  # distances are not degenerate
    assert err < 1e-4 and rel < 1e-4


def test_cm_resize_is_torch_bilinear():
    """The CM code's 32 -> 224 bilinear (jax.image.resize) is torch's align_corners=False upsampling."""
    import torch

    a, _ = _images(2, 32, seed=3)
    got = jax.image.resize(a, (2, lp.RESIZE, lp.RESIZE, 3), "bilinear")
    want = torch.nn.functional.interpolate(torch.from_numpy(a).permute(0, 3, 1, 2), size=lp.RESIZE,
                                           mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-6)


@pytest.mark.xdist_group("lpips")  # shares the module fixture: one worker builds it once
def test_bad_weights_and_inputs_fail_in_one_line(ref, tmp_path):
    import torch

    flat = dict(np.load(ref["random"]))
    params = lp.load_params(ref["random"])
    np.savez(tmp_path / "short.npz", **{k: v for k, v in flat.items() if k != "lin4"})
    with pytest.raises(lp.WeightsError, match="not an LPIPS-VGG weights file .* e.g. lin4"):
        lp.load_params(str(tmp_path / "short.npz"))
    flat["conv0/bias"] = flat["conv0/bias"] + 1
    np.savez(tmp_path / "tampered.npz", **flat)
    with pytest.raises(lp.WeightsError, match="content hash differs"):
        lp.load_params(str(tmp_path / "tampered.npz"))
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "part.pth")
    assert lp.main([str(tmp_path / "part.pth"), "--out", str(tmp_path / "x.npz")]) == 2
    assert not os.path.exists(tmp_path / "x.npz")
    x = jnp.zeros((1, 8, 8, 3))
    with pytest.raises(ValueError, match="at least 16x16"):
        lp.lpips(params, x, x)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        lp.lpips(params, x[..., :2], x[..., :2])


def test_unit_norm_has_finite_gradient_at_dead_positions():
    f = jnp.zeros((1, 2, 2, 4)).at[0, 0, 0].set(1.0)
    g = jax.grad(lambda f: (lp._unit(f) ** 2).sum())(f)
    assert np.isfinite(np.asarray(g)).all()


@pytest.mark.xdist_group("lpips")  # shares the module fixture: one worker builds it once
def test_weights_fetched_and_converted_once(ref, env, server, tmp_path, monkeypatch):
    """Assets vgg16 + lpips_vgg from a local server -> converted once in the cache; no server:
    one line saying how to go on."""
    import hashlib

    blobs = {n: open(ref["tmp"] / f, "rb").read() for n, f in (("vgg16", "vgg16.pth"), ("lpips_vgg", "heads.pth"))}
    env(**{n: {"url": server.serve(f"/lpips/{n}.pth", b), "sha256": hashlib.sha256(b).hexdigest()}
           for n, b in blobs.items()})
    got = lp.load_params()
    jax.tree.map(np.testing.assert_array_equal, got, lp.load_params(ref["random"]))
    npz = tmp_path / "cache" / "lpips_vgg.npz"
    mtime = os.path.getmtime(npz)
    lp.load_params()  # cached: neither fetched nor converted again
    assert os.path.getmtime(npz) == mtime and server.hits["/lpips/vgg16.pth"] == 1
    env()  # every asset at a closed port, empty cache
    monkeypatch.setenv("GENMOD_CACHE", str(tmp_path / "empty"))
    with pytest.raises(lp.WeightsError, match=r"cannot fetch vgg16 .*--config\.cm\.metric=l2$"):
        lp.load_params()


@pytest.mark.slow  # ~60 s on 2 busy cores: the VGG-16 forward and backward compile
def test_ct_step_loss_is_lpips_of_student_and_target(tmp_path):
    """cm.metric=lpips: the CT step's loss is the mean LPIPS (random weights, bilinear resize)
    of the student and target it builds; mu(0) follows cm.mu_rule."""
    from genmod import config_lib
    from genmod.eval.inception import flatten
    from genmod.methods import cm

    params = lp.init_params(1)
    lp.save({k: np.asarray(v) for k, v in flatten(params).items()}, str(tmp_path / "w.npz"))
    c = config_lib.load("ct_cifar10:smoke")
    with c.unlocked():
        c.cm.metric, c.cm.lpips_weights, c.cm.lpips_resize = "lpips", str(tmp_path / "w.npz"), 40
    m = cm.Method(c)
    jax.tree.map(np.testing.assert_array_equal, m.frozen["lpips"], params)
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3), minval=-1, maxval=1)
    state = m.init(jax.random.PRNGKey(1), {"x": x})
    _, metrics = jax.jit(m.train_step)(state, {"x": x}, m.frozen)
    N = cm.ct_N(0, c.total_steps, c.cm.ct_s0, c.cm.ct_s1)
    s, t, _ = jax.jit(m.ct_cd_pair)(state.params["net"], state.extra["target"], x, state.key(), N, m.frozen)
    want = float(LPIPS_JIT(params, s, t, resize=40).mean())
    l2 = float(((s - t) ** 2).mean())
    print(f"CT step loss {float(metrics['cm/loss']):.6g}, direct LPIPS {want:.6g} (l2 would be {l2:.3g})")
    np.testing.assert_allclose(float(metrics["cm/loss"]), want, rtol=1e-5)
    assert abs(want - l2) > 0.1 * want
    np.testing.assert_allclose(float(metrics["cm/mu"]), 0.81, rtol=1e-6)  # mu_rule="code" at k = 0
