"""Backbones F(x, c_noise, labels_onehot, train=...). ``build`` picks one from config.net."""
from __future__ import annotations

import importlib


def _mlp(shape, num_classes, **kw):
    from genmod.nets.mlp import MLP

    return MLP(out_dim=shape[-1], label_dim=num_classes, **kw)


def _unet(shape, num_classes, **kw):
    from genmod.nets.unet import SongUNet

    return SongUNet(img_resolution=shape[0], in_channels=shape[-1], out_channels=shape[-1],
                    label_dim=num_classes, **kw)


def _adm(shape, num_classes, **kw):
    from genmod.nets.adm import DhariwalUNet

    return DhariwalUNet(img_resolution=shape[0], in_channels=shape[-1], out_channels=shape[-1],
                        label_dim=num_classes, **kw)


ARCHS = {"mlp": _mlp, "unet": _unet, "adm": _adm}


def build(net_cfg, shape, num_classes=0):
    """``net_cfg.arch`` is a name in ARCHS or ``module:function``; the rest are kwargs."""
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in net_cfg.items() if k != "arch"}
    arch = net_cfg.arch
    if ":" in arch:
        mod, fn = arch.split(":")
        return getattr(importlib.import_module(mod), fn)(shape, num_classes, **kw)
    if arch not in ARCHS:
        raise ValueError(f"unknown net.arch {arch!r}; valid: {', '.join(ARCHS)} (or module:function)")
    return ARCHS[arch](tuple(shape), num_classes, **kw)
