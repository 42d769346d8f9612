"""Configs: one file per experiment in ``configs/`` (``get_config(arg)``), presets after a
colon (``NAME:smoke``), typed ``--config.a.b=value`` overrides, and ``config.json`` checks."""
from __future__ import annotations

import ast
import importlib.util
import json
import os

import ml_collections
from ml_collections import ConfigDict

REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
# Keys that may change when a run resumes (schedule length, cadence, topology).
RESUME_SAFE = ("total_steps", "log_every", "ckpt_every", "sample_every", "keep", "num_preview",
               "mesh", "sharding", "sample", "max_bad_steps", "stages_steps")


class ConfigError(ValueError):
    """Bad config name, preset, key or value (one clear line)."""


def base() -> ConfigDict:
    """Defaults shared by every experiment; configs override what they need."""
    c = ConfigDict()
    c.method = "edm"
    c.seed = 0
    c.total_steps = 1000
    c.batch_size = 64
    c.data = ConfigDict(dict(source="digits", split="train", shape=(8, 8, 1), resize="none",
                             flip=False, num_classes=0, size=65536))
    c.net = ConfigDict(dict(arch="mlp"))
    c.optim = ConfigDict(dict(net=dict(name="adam", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, warmup_img=0, warmup_steps=0,
                                       clip=0.0, weight_decay=0.0)))
    c.ema = ConfigDict(dict(halflife_img=500_000.0, rampup=0.05))
    c.mesh = ConfigDict(dict(data=-1, fsdp=1))
    # FSDP (when mesh.fsdp > 1): leaves >= fsdp_min_size are sharded on their largest divisible
    # axis, except paths matching a regex in ``replicate``.
    c.sharding = ConfigDict(dict(fsdp_min_size=2**14, replicate=()))
    c.log_every = 100
    c.ckpt_every = 1000
    c.sample_every = 1000
    c.keep = 3
    c.num_preview = 64
    c.max_bad_steps = 100  # consecutive non-finite steps before the run stops
    c.sample = ConfigDict(dict(nfe=35))
    return c


def toy_recipe(c: ConfigDict) -> ConfigDict:
    """Shared 2-D benchmark: 8-mode ring mixture (exact teacher available), 3x256 MLP."""
    c.data.source, c.data.shape = "gmm:ring", (2,)
    c.net = ConfigDict(dict(arch="mlp", hidden=(256, 256, 256)))
    c.total_steps, c.batch_size = 3000, 512
    c.optim.net.lr, c.optim.net.warmup_steps = 2e-3, 100
    c.ema.halflife_img = 50_000.0
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 250, 1000, 1000, 2048
    return c


def edm_cifar10_recipe(c: ConfigDict) -> ConfigDict:
    """EDM's CIFAR-10 training recipe (Karras et al. 2022): DDPM++ 55.7M, batch 512, Adam lr
    1e-3 with a 10 Mimg warm-up, 200 Mimg, EMA half-life 0.5 Mimg (ramp-up 0.05)."""
    from genmod.nets import unet

    c.data.source, c.data.shape = "tfds:cifar10", (32, 32, 3)
    c.net = ConfigDict(dict(arch="unet", **unet.ddpmpp_cifar10()))
    c.total_steps, c.batch_size = 390_625, 512
    c.optim.net.lr, c.optim.net.warmup_img = 1e-3, 10_000_000
    c.ema.halflife_img, c.ema.rampup = 500_000.0, 0.05
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 500, 5000, 5000, 64
    return c


# The smoke runs test a config's wiring (method, teacher, optimizers, data shapes, sampler), so
# their U-Net is one level without attention (half the compile time of two levels); every
# U-Net variant is tested at full depth in tests/test_unet.py.
TINY_UNET = dict(arch="unet", model_channels=16, channel_mult=(1,), num_blocks=1, attn_resolutions=(), dropout=0.0)


def smoke(c: ConfigDict, net: dict | None = None, data_source: str | None = None) -> ConfigDict:
    """Seconds-long CPU run of any config: few steps, small batch, optional tiny net/data."""
    c.total_steps, c.batch_size = 4, 8
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 2, 4, 4, 4
    c.sample.nfe = min(c.sample.nfe, 3)
    c.ema.halflife_img = 100.0
    if net is not None:
        c.net = ConfigDict(net)
    if data_source is not None:
        c.data.source = data_source
    return c


def smoke32(c: ConfigDict, **net_kw) -> ConfigDict:
    """``smoke`` for 32x32x3 configs: TINY_UNET of the config's kind on random images."""
    net = dict(TINY_UNET, dropout=c.net.get("dropout", 0.0))
    for k in ("embedding_type", "channel_mult_noise", "encoder_type", "resample_filter", "fourier_scale"):
        if k in c.net:
            net[k] = c.net[k]
    return smoke(c, {**net, **net_kw}, data_source="synthetic:32x32x3")


def smoke64(c: ConfigDict) -> ConfigDict:
    """``smoke`` for the class-conditional 64x64x3 (ImageNet-64) configs: TINY_UNET with a second
    level (at 64x64 the one-level net's slower steps cost more than its faster compile), 10 classes."""
    smoke(c, dict(TINY_UNET, channel_mult=(1, 2)), data_source="synthetic:64x64x3")
    c.data.num_classes, c.batch_size = 10, 4
    return c


def available() -> list[str]:
    names = set()
    for d in (os.path.join(os.getcwd(), "configs"), REPO_CONFIGS):
        if os.path.isdir(d):
            names |= {f[:-3] for f in os.listdir(d) if f.endswith(".py") and not f.startswith("_")}
    return sorted(names)


def config_path(name: str) -> str:
    if name.endswith(".py"):
        if os.path.exists(name):
            return name
        raise ConfigError(f"config file not found: {name}")
    for d in (os.path.join(os.getcwd(), "configs"), REPO_CONFIGS):
        p = os.path.join(d, name + ".py")
        if os.path.exists(p):
            return p
    raise ConfigError(f"unknown config {name!r}; valid: {', '.join(available())}")


def load(spec: str) -> ConfigDict:
    """``NAME[:arg]`` -> the config that ``configs/NAME.py``'s ``get_config(arg)`` returns."""
    name, _, arg = spec.partition(":")
    path = config_path(name)
    mod_spec = importlib.util.spec_from_file_location(f"genmod_config_{os.path.basename(name)}", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    cfg = mod.get_config(arg or None)
    cfg.lock()
    return cfg


def apply_presets(config: ConfigDict, arg: str | None, presets: dict) -> ConfigDict:
    """``arg`` is a comma list of preset names from ``presets`` (name -> fn(config))."""
    for p in filter(None, (arg or "").split(",")):
        if p not in presets:
            raise ConfigError(f"unknown preset {p!r}; valid: {', '.join(sorted(presets))}")
        presets[p](config)
    return config


def _parse(value: str, old, key: str):
    if isinstance(old, bool):
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise ConfigError(f"--config.{key} expects a bool, got {value!r}")
    if isinstance(old, (int, float)):
        try:
            v = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            v = None
        if not isinstance(v, (int, float)) or isinstance(v, bool) or (isinstance(old, int) and not float(v).is_integer()):
            raise ConfigError(f"--config.{key} expects {type(old).__name__}, got {value!r}")
        return type(old)(v)
    if isinstance(old, str):
        return value
    try:
        v = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        if old is None:
            return value
        raise ConfigError(f"--config.{key} expects {type(old).__name__}, got {value!r}") from None
    if isinstance(old, (tuple, list)):
        if not isinstance(v, (tuple, list)):
            v = (v,)
        return type(old)(v)
    return v


def override(config: ConfigDict, key: str, value: str):
    node, parts = config, key.split(".")
    for i, p in enumerate(parts):
        if not isinstance(node, ConfigDict) or p not in node:
            where = ".".join(parts[:i]) or "config"
            valid = ", ".join(sorted(node.keys())) if isinstance(node, ConfigDict) else "(not a group)"
            raise ConfigError(f"unknown config key {key!r}; valid keys in {where}: {valid}")
        if i < len(parts) - 1:
            node = node[p]
    leaf = parts[-1]
    with node.unlocked():
        node[leaf] = _parse(value, node[leaf], key)


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def check_workdir(config: ConfigDict, workdir: str, force: bool = False):
    """Refuse to resume a workdir written by a different config (unless ``force``)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path) or force:
        return
    with open(path) as f:
        old = flat(json.load(f))
    new = flat(json.loads(config.to_json()))
    diff = sorted(k for k in set(old) | set(new)
                  if old.get(k) != new.get(k) and k.split(".")[0] not in RESUME_SAFE)
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:4])
        raise ConfigError(f"workdir {workdir} was created by a different config ({shown}"
                          f"{', ...' if len(diff) > 4 else ''}); use a fresh --workdir or --force")


def save_json(config: ConfigDict, workdir: str):
    os.makedirs(workdir, exist_ok=True)
    tmp = os.path.join(workdir, "config.json.tmp")
    with open(tmp, "w") as f:
        f.write(config.to_json(indent=2))
    os.replace(tmp, os.path.join(workdir, "config.json"))


def from_json(path: str) -> ConfigDict:
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))
