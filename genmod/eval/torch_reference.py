"""pytorch-fid and lpips as numerical references, for the parity tests and the benchmark only.

Needs ``pip install torch==2.13.0 pytorch-fid`` (one command, so pip keeps the CPU torch).
Nothing here downloads anything: pytorch-fid's ``InceptionV3([3])`` module tree is built by
its own code with its weight download stubbed out, then given random, seeded weights.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import types

import numpy as np


def torchvision_models(*modules):
    """``torchvision.models`` with ``modules`` (e.g. "inception", "vgg") imported.

    torchvision's wheel may fail to load its compiled ops next to a CPU torch ("operator
    torchvision::nms does not exist"); the model code is pure Python, so register bare
    ``torchvision`` / ``torchvision.models`` package modules and import just those."""
    import torch  # noqa: F401

    try:
        for m in modules:
            importlib.import_module(f"torchvision.models.{m}")
    except Exception:  # noqa: BLE001 - compiled-ops failure: fall back to the bare modules
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        spec = importlib.util.find_spec("torchvision")
        root = list(spec.submodule_search_locations)[0]
        tv = types.ModuleType("torchvision")
        tv.__path__ = [root]
        tv.__version__ = importlib.metadata.version("torchvision")
        tvm = types.ModuleType("torchvision.models")
        tvm.__path__ = [os.path.join(root, "models")]
        tv.models = tvm
        sys.modules["torchvision"], sys.modules["torchvision.models"] = tv, tvm
    tvm = sys.modules["torchvision.models"]
    for m in modules:  # a bare package has only what is imported here
        mod = importlib.import_module(f"torchvision.models.{m}")
        setattr(tvm, m, mod)
        for name in getattr(mod, "__all__", ()):
            setattr(tvm, name, getattr(mod, name))
    return sys.modules["torchvision.models"]


def import_pytorch_fid():
    """-> (pytorch_fid.inception, pytorch_fid.fid_score), via ``torchvision_models``."""
    torchvision_models("inception")
    import pytorch_fid.fid_score as fid_score
    import pytorch_fid.inception as pfi

    return pfi, fid_score


def import_lpips():
    """-> the ``lpips`` package (its VGG trunk comes from ``torchvision_models``)."""
    torchvision_models("vgg")
    import lpips

    return lpips


def random_pytorch_fid_model(seed: int = 0, calibration_images=None):
    """pytorch-fid's ``InceptionV3([3])`` (eval mode) with random weights and no download.

    Convs get He-normal weights; BatchNorm gets random affine parameters and running
    statistics measured on ``calibration_images`` (uint8 NHWC; default: random smooth images)
    and then perturbed, so the eval-mode BN path (eps=1e-3) really matters. The bare
    torchvision Inception3 (whose ``state_dict()`` has the key names of pytorch-fid's .pth) is
    attached as ``model.backbone``; it shares its modules with ``model.blocks``."""
    import torch

    pfi, _ = import_pytorch_fid()
    orig_builder, orig_url = pfi._inception_v3, pfi.load_state_dict_from_url
    built = []

    def builder(*a, **k):
        m = orig_builder(*a, **k)
        built.append(m)
        object.__setattr__(m, "load_state_dict", lambda *a, **k: None)  # skip the pretrained load
        return m

    pfi._inception_v3, pfi.load_state_dict_from_url = builder, lambda *a, **k: {}
    try:
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    finally:
        pfi._inception_v3, pfi.load_state_dict_from_url = orig_builder, orig_url
    object.__setattr__(model, "backbone", built[0])
    if calibration_images is None:
        calibration_images = smooth_images(4, 32, 32, seed=seed + 100)
    g = torch.Generator().manual_seed(seed)
    bns = []
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Conv2d):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(mod, torch.nn.BatchNorm2d):
                assert mod.eps == 1e-3
                mod.weight.copy_(0.5 + torch.rand(mod.weight.shape, generator=g))
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=g))
                mod.reset_running_stats()
                mod.momentum = None  # cumulative: running stats = this batch's statistics
                bns.append(mod)
        model.train()  # calibrate BN statistics so activations stay O(1) through 94 layers
        model(to_torch(calibration_images))
        model.eval()
        for mod in bns:  # then perturb them
            std = mod.running_var.sqrt()
            mod.running_mean.add_(0.1 * std * torch.randn(std.shape, generator=g))
            mod.running_var.mul_(0.7 + 0.6 * torch.rand(std.shape, generator=g))
    return model


def to_torch(images_uint8):
    """uint8 NHWC -> float NCHW in [0, 1], as pytorch-fid's ``ToTensor``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float() / 255


def torch_features(model, images_uint8) -> np.ndarray:
    """pytorch-fid's pool3 features (float64 numpy, as its ``get_activations`` hands on)."""
    import torch

    with torch.no_grad():
        return model(to_torch(images_uint8))[0].squeeze(3).squeeze(2).numpy().astype(np.float64)


def smooth_images(n, h, w, seed):
    """uint8 images: smooth random fields plus pixel noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out = np.empty((n, h, w, 3), np.float64)
    for i in range(n):
        for c in range(3):
            f = rng.uniform(1, 4, 2)
            ph = rng.uniform(0, 2 * np.pi, 2)
            out[i, ..., c] = 0.5 + 0.35 * np.sin(2 * np.pi * f[0] * yy + ph[0]) * np.cos(2 * np.pi * f[1] * xx + ph[1])
    out += rng.normal(0, 0.08, out.shape)
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)
