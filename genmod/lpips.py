"""LPIPS (Zhang et al. 2018), VGG-16 variant, version 0.1, in Flax: the distance of the
``lpips`` package's ``LPIPS(net='vgg', version='0.1')`` on NHWC images in [-1, 1].

    d(x, y) = sum_l mean_hw sum_c w_lc (u_l(x) - u_l(y))_c^2

u_l: the relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 activations of torchvision's VGG-16
``features`` on lpips's ScalingLayer output ((x - shift) / scale, ImageNet's mean and std for
[-1, 1] inputs), each divided by its channel norm (+1e-10); w_l >= 0: lpips's linear heads
(1x1 convolutions, no bias). Parity with the package: tests/test_lpips.py.

CD and CT use it as a loss (``cm.metric="lpips"``) as the CM code does: both images are first
resized bilinearly to 224x224 (``jax.image.resize``, jcm/losses.py of
openai/consistency_models_cifar10); ``lpips(..., resize=224)``.

Weights: torchvision's ImageNet VGG-16 (asset ``vgg16``) plus lpips's v0.1 heads (asset
``lpips_vgg``; the lpips wheel ships a copy as ``lpips/weights/v0.1/vgg.pth``), fetched into the
cache and converted there once, or converted by hand (torch needed for this step only; read
with ``torch.load(weights_only=True)``):

    python -m genmod.lpips vgg16-397923af.pth vgg.pth --out checkpoints/lpips/lpips_vgg.npz
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

SHIFT = (-0.030, -0.088, -0.188)  # lpips ScalingLayer, version 0.1
SCALE = (0.458, 0.448, 0.450)
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # torchvision ``features`` indices of relu1_2 .. relu5_3
RESIZE = 224  # the CM code's LPIPS input size
CONVERT_CMD = "python -m genmod.lpips vgg16-397923af.pth vgg.pth --out lpips_vgg.npz"


class WeightsError(FileNotFoundError):
    """LPIPS weights missing or malformed (one clear line)."""


def _unit(f, eps=1e-10):
    """lpips's normalize_tensor over channels; the norm's sqrt is clamped at 1e-15 (a change
    below float32 resolution) so a dead position (all channels 0) has a finite gradient."""
    return f / (jnp.sqrt(jnp.maximum(jnp.sum(f * f, axis=-1, keepdims=True), 1e-30)) + eps)


class LPIPS(nn.Module):
    """(x, y) NHWC in [-1, 1], 3 channels -> (N,) distances. Parameters ``conv{i}`` (i: the
    layer's index in torchvision's ``vgg16().features``) and ``lin{l}`` (heads, shape (C,))."""
    precision: Any = "highest"

    @nn.compact
    def __call__(self, x, y):
        n = x.shape[0]
        h = (jnp.concatenate([x, y]) - jnp.asarray(SHIFT)) / jnp.asarray(SCALE)  # one pass for both
        d, i = jnp.zeros((n,), h.dtype), 0
        for v in VGG16:
            if v == "M":
                h, i = nn.max_pool(h, (2, 2), (2, 2)), i + 1
                continue
            h = nn.relu(nn.Conv(v, (3, 3), padding=1, precision=self.precision, name=f"conv{i}")(h))
            i += 2
            if i - 1 in TAPS:
                u = _unit(h)
                w = self.param(f"lin{TAPS.index(i - 1)}", lambda _, s: jnp.full(s, 1.0 / s[0]), (v,))
                d = d + jnp.einsum("nhwc,c->n", (u[:n] - u[n:]) ** 2, w, precision=self.precision) / (
                    u.shape[1] * u.shape[2])
        return d


def lpips(params, x, y, resize: int = 0, precision="highest"):
    """(N,) LPIPS of NHWC images in [-1, 1] (grey ones repeated to RGB); ``resize`` > 0: both
    resized bilinearly to resize x resize first, as the CM code does before its LPIPS loss."""
    if x.shape != y.shape or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"lpips: expected two NHWC batches of one shape with 1 or 3 channels, got "
                         f"{x.shape} and {y.shape}")
    if x.shape[-1] == 1:
        x, y = jnp.repeat(x, 3, -1), jnp.repeat(y, 3, -1)
    if resize:
        x, y = (jax.image.resize(v, (v.shape[0], resize, resize, 3), "bilinear") for v in (x, y))
    if min(x.shape[1:3]) < 16:
        raise ValueError(f"lpips: VGG-16's four 2x2 pools need images of at least 16x16, got "
                         f"{x.shape[1]}x{x.shape[2]} (set a resize)")
    return LPIPS(precision).apply({"params": params}, x, y)


def init_params(seed: int = 0):
    """Random parameters (tests; not a meaningful metric): He-normal kernels, small biases,
    non-negative heads; numpy draws them (jax.random takes ~20 s for VGG's 14.7M on 2 cores)."""
    from genmod.eval.inception import unflatten

    rng = np.random.default_rng(seed)
    draw = {"kernel": lambda s: rng.standard_normal(s) * np.sqrt(2 / np.prod(s[:3])),
            "bias": lambda s: 0.05 * rng.standard_normal(s)}
    flat = {k: (draw[k.rsplit("/", 1)[1]] if "/" in k else lambda s: rng.uniform(0, 2 / s[0], s))(s.shape)
            for k, s in sorted(_expected().items())}
    return unflatten({k: jnp.asarray(v, jnp.float32) for k, v in flat.items()})


def _expected() -> dict:
    from genmod.eval.inception import flatten

    x = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
    return flatten(jax.eval_shape(LPIPS().init, jax.random.key(0), x, x)["params"])


# -- weights: torch state dicts -> npz -> params ---------------------------------------------
def convert_state_dict(sd) -> dict[str, np.ndarray]:
    """torchvision VGG-16 (``features.{i}.*``; ``classifier.*`` dropped) and lpips heads
    (``lin{l}.model.{j}.weight``) merged in one dict -> flat {name: float32 array}."""
    out = {}
    for name, v in sd.items():
        a = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, np.float32)
        conv = re.fullmatch(r"features\.(\d+)\.(weight|bias)", name)
        lin = re.fullmatch(r"lin(\d)\.model\.\d\.weight", name)
        if conv:
            key = f"conv{conv[1]}/" + ("kernel" if conv[2] == "weight" else "bias")
            out[key] = a.transpose(2, 3, 1, 0) if conv[2] == "weight" else a  # OIHW -> HWIO
        elif lin:
            out[f"lin{lin[1]}"] = a.reshape(-1)  # (1, C, 1, 1) -> (C,)
        elif not name.startswith("classifier."):
            raise ValueError(f"unexpected state-dict entry {name}")
    expected = _expected()
    missing, extra = sorted(set(expected) - set(out)), sorted(set(out) - set(expected))
    if missing or extra:
        why = "" if any(k.startswith("lin") for k in out) else " (no lin* heads: pass lpips's vgg.pth too)"
        raise ValueError(f"not VGG-16 + LPIPS heads: missing {missing[:3]}, unexpected {extra[:3]}{why}")
    for k, s in expected.items():
        if out[k].shape != s.shape:
            raise ValueError(f"{k}: shape {out[k].shape} != expected {s.shape}")
    return {k: np.ascontiguousarray(out[k]) for k in sorted(out)}


def save(flat: dict, out: str, sources: tuple = ()) -> str:
    """Write ``flat`` (+ meta: content hash, source files' sha256) to ``out`` atomically; -> hash."""
    from genmod.eval.inception import content_sha256

    sha = content_sha256(flat)
    meta = {"meta/sha256": np.asarray(sha), "meta/source_sha256": np.asarray(",".join(sources))}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.tmp{os.getpid()}.npz"
    np.savez(tmp, **flat, **meta)
    os.replace(tmp, out)
    return sha


def convert(pths, out: str) -> dict:
    """Read the .pth files safely (weights_only), merge, convert, write ``out``."""
    import torch  # optional dependency, needed only here

    from genmod.eval.convert import file_sha256

    sd = {}
    for p in pths:
        d = torch.load(p, map_location="cpu", weights_only=True)
        if not isinstance(d, dict):
            raise ValueError(f"{p}: expected a state dict, got {type(d).__name__}")
        sd.update(d)
    sources = tuple(file_sha256(p) for p in pths)
    return {"out": out, "sha256": save(convert_state_dict(sd), out, sources), "sources": sources}


def fetched_weights(log=None) -> str:
    """Assets ``vgg16`` + ``lpips_vgg`` fetched into the cache (hash-checked) and converted
    beside them once (redone if either file changed)."""
    from genmod import assets
    from genmod.eval.convert import file_sha256

    hint = "; or set cm.lpips_weights=PATH.npz (python -m genmod.lpips), or --config.cm.metric=l2"
    try:
        pths = [assets.fetch("vgg16", log), assets.fetch("lpips_vgg", log)]
    except assets.AssetError as e:
        raise WeightsError(f"LPIPS weights: {e}, or --config.cm.metric=l2") from None
    out = os.path.join(os.path.dirname(pths[0]), "lpips_vgg.npz")
    sources = ",".join(file_sha256(p) for p in pths)
    try:
        with np.load(out, allow_pickle=False) as f:
            if str(f["meta/source_sha256"]) == sources:
                return out
    except (OSError, ValueError, KeyError, EOFError):
        pass  # absent or from other files: convert
    try:
        convert(pths, out)
    except ImportError:
        raise WeightsError(f"converting the fetched LPIPS weights needs torch (CPU is enough){hint}") from None
    except Exception as e:  # noqa: BLE001 - one clear line for any malformed input
        raise WeightsError(f"{pths}: cannot convert ({(str(e).splitlines() or [''])[0][:200]}){hint}") from None
    return out


def load_params(path: str | None = None, log=None):
    """Converted weights (``path``, else the fetched ones) -> params, checked name by name."""
    from genmod.eval.inception import content_sha256, unflatten

    path = path or fetched_weights(log)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        raise WeightsError(f"{path}: cannot read LPIPS weights npz ({e}); convert with: {CONVERT_CMD}") from None
    flat = {k: v for k, v in arrays.items() if not k.startswith("meta/")}
    expected = _expected()
    bad = sorted(set(expected) ^ set(flat)) + sorted(
        k for k in set(expected) & set(flat) if flat[k].shape != expected[k].shape or flat[k].dtype != np.float32)
    if bad:
        raise WeightsError(f"{path}: not an LPIPS-VGG weights file ({len(bad)} missing, unexpected or "
                           f"mis-shaped arrays, e.g. {bad[0]}); convert with: {CONVERT_CMD}")
    if "meta/sha256" in arrays and str(arrays["meta/sha256"]) != content_sha256(flat):
        raise WeightsError(f"{path}: content hash differs from the stored one (corrupt file); convert again")
    return unflatten({k: jnp.asarray(v) for k, v in flat.items()})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m genmod.lpips",
                                description="Convert torchvision's VGG-16 and lpips's heads to genmod's LPIPS npz.")
    p.add_argument("pth", nargs="+", help="vgg16-397923af.pth and lpips's v0.1 vgg.pth")
    p.add_argument("--out", default=os.path.join("checkpoints", "lpips", "lpips_vgg.npz"))
    args = p.parse_args(argv)
    from genmod.eval.convert import run_converter  # the converters' shared one-line errors

    info, err = run_converter(lambda out: convert(args.pth, out), args.pth, args.out)
    if err:
        print(err, file=sys.stderr)
        return 2
    print(f"wrote {info['out']} (weights sha256 {info['sha256']}); set --config.cm.lpips_weights={info['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
