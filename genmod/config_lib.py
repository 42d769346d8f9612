"""Configs: one file per experiment in ``configs/`` (``get_config(arg)``), presets after a
colon (``NAME:smoke``), typed ``--config.a.b=value`` overrides, and ``config.json`` checks."""
from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import re

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
                                       cooldown_frac=0.0, clip=0.0, weight_decay=0.0)))
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

    c.data.source, c.data.shape = "cifar10", (32, 32, 3)
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
    for k in ("embedding_type", "channel_mult_noise", "encoder_type", "resample_filter", "fourier_scale", "augment_dim"):
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
    """The packaged configs (``configs/*.py`` beside the genmod package)."""
    if not os.path.isdir(REPO_CONFIGS):
        return []
    return sorted(f[:-3] for f in os.listdir(REPO_CONFIGS) if f.endswith(".py") and not f.startswith("_"))


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``choices`` to a mistyped ``word`` (difflib),
    or ""."""
    m = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {m[0]!r}?)" if m else ""


def description(name: str, width: int = 110) -> str:
    """A packaged config's one-line description: the first sentence of its docstring (read
    without running the file), cut to ``width`` characters."""
    try:
        with open(os.path.join(REPO_CONFIGS, name + ".py")) as f:
            doc = ast.get_docstring(ast.parse(f.read()))
    except (OSError, SyntaxError, ValueError):
        return ""
    if not doc:
        return ""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    text = re.split(r"(?<=\.)\s+(?=[A-Z])", text)[0]
    return text if len(text) <= width else text[:width - 3].rsplit(" ", 1)[0] + " ..."


def config_path(name: str) -> str:
    """``NAME`` is a packaged config (``configs/NAME.py`` of this install: never the current
    directory's ``configs/``); any other Python file runs only when named as a path ending in
    ``.py`` (``--config path/to/file.py``), so a config name can never reach outside."""
    if name.endswith(".py"):
        if os.path.isfile(name):
            return name
        raise ConfigError(f"config file not found: {name}")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_\-]*", name or ""):
        raise ConfigError(f"bad config name {name!r}: use a name from configs/ ({', '.join(available())}) "
                          f"or a path ending in .py")
    p = os.path.join(REPO_CONFIGS, name + ".py")
    if os.path.isfile(p):
        return p
    raise ConfigError(f"unknown config {name!r}{did_you_mean(name, available())}; valid: {', '.join(available())}")


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
            raise ConfigError(f"unknown preset {p!r}{did_you_mean(p, presets)}; valid: {', '.join(sorted(presets))}")
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
            hint = ""
            if isinstance(node, ConfigDict):
                m = difflib.get_close_matches(p, list(node.keys()), n=1, cutoff=0.6)
                hint = f" (did you mean {'.'.join(parts[:i] + m + parts[i + 1:])!r}?)" if m else ""
            raise ConfigError(f"unknown config key {key!r}{hint}; valid keys in {where}: {valid}")
        if i < len(parts) - 1:
            node = node[p]
    leaf = parts[-1]
    if isinstance(node[leaf], ConfigDict):
        raise ConfigError(f"--config.{key} is a group (keys: {', '.join(sorted(node[leaf].keys()))}); "
                          f"set its keys: --config.{key}.KEY=value")
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


def read_workdir_config(workdir: str) -> dict | None:
    """A workdir's ``config.json`` as a dict (None when there is none)."""
    path = os.path.join(workdir, "config.json")
    return read_config_file(path) if os.path.exists(path) else None


def read_config_file(path: str) -> dict:
    """A config JSON file as a dict; an empty, truncated or non-JSON file is a ConfigError naming
    it (never overwritten: it may be the only record of how the checkpoints beside it were made)."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (UnicodeDecodeError, ValueError) as e:
        why = "empty" if os.path.getsize(path) == 0 else f"not valid JSON ({str(e).splitlines()[0][:80]})"
        raise ConfigError(f"{path} is {why}: not a genmod config (damaged?); fix or move it aside, "
                          f"or use a fresh --workdir") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path} holds a JSON {type(d).__name__}, not a genmod config; fix or move it "
                          f"aside, or use a fresh --workdir")
    return d


def check_workdir(config: ConfigDict, workdir: str, force: bool = False):
    """Refuse to resume a workdir written by a different config (unless ``force``). A damaged
    ``config.json`` is refused even with ``force``."""
    old = read_workdir_config(workdir)
    if old is None or force:
        return
    old = flat(old)
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
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(workdir, "config.json"))


def from_json(path: str) -> ConfigDict:
    return ml_collections.ConfigDict(read_config_file(path))


# -- validation: every value checked before anything is compiled, created or overwritten --------
GROUPS = ("data", "net", "optim", "ema", "mesh", "sample")  # groups every config has (see base())
# (key, minimum): integers the loop itself uses
INT_RANGES = (("seed", 0), ("total_steps", 1), ("batch_size", 1), ("log_every", 1), ("ckpt_every", 1),
              ("sample_every", 0), ("keep", 1), ("num_preview", 0), ("max_bad_steps", 1))


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fail(msg):
    raise ConfigError(msg)


def mesh_size(mesh_cfg, num_devices: int, num_processes: int = 1) -> int:
    """Devices the mesh ``mesh_cfg`` uses out of ``num_devices`` (as sharding.make_mesh builds
    it), or a ConfigError saying why it does not fit."""
    names = list(mesh_cfg.keys())
    sizes = [mesh_cfg[k] for k in names]
    shown = dict(zip(names, sizes))
    if not names or not all(_is_int(s) and (s == -1 or s >= 1) for s in sizes):
        _fail(f"config.mesh {shown}: each axis is a positive int, or -1 (all remaining devices)")
    if sizes.count(-1) > 1:
        _fail(f"config.mesh {shown}: at most one axis may be -1")
    known = 1
    for s in sizes:
        known *= s if s != -1 else 1
    n = num_devices
    if -1 not in sizes:
        if known > n or (num_processes > 1 and known != n):
            _fail(f"config.mesh {shown} needs {known} devices, there are {n}"
                  + (" (a multi-process run uses every device)" if num_processes > 1 else ""))
        return known
    if n % known:
        _fail(f"config.mesh {shown} does not fit {n} devices ({n} is not divisible by {known})")
    return n


def validate(config: ConfigDict, num_devices: int | None = None, num_processes: int = 1):
    """Check a config's types, ranges and (given ``num_devices``) its fit to the mesh, so a bad
    value is one clear ConfigError line before anything is compiled or written. Method-specific
    keys are checked by the methods themselves."""
    for g in GROUPS:
        if g in config and not isinstance(config[g], (ConfigDict, dict)):
            _fail(f"config.{g} must be a group of keys, got {config[g]!r}")
    if not isinstance(config.get("method"), str) or not config.method:
        _fail(f"config.method must be a method name, got {config.get('method')!r}")
    for k, lo in INT_RANGES:
        if k not in config:
            continue
        v = config[k]
        if not _is_int(v) or v < lo:
            _fail(f"config.{k} must be an integer >= {lo}, got {v!r}")
    if config.get("seed", 0) >= 2**31:
        _fail(f"config.seed must be < 2**31, got {config.seed}")
    d = config.get("data") or ConfigDict()
    shape = d.get("shape")
    if shape is not None and (not isinstance(shape, (tuple, list)) or not shape
                              or not all(_is_int(v) and v >= 1 for v in shape)):
        _fail(f"config.data.shape must be positive ints, e.g. (32, 32, 3) or (2,), got {shape!r}")
    nc = d.get("num_classes", 0)
    if not _is_int(nc) or nc < 0:
        _fail(f"config.data.num_classes must be an integer >= 0, got {nc!r}")
    if "size" in d and (not _is_int(d.size) or d.size < 1):
        _fail(f"config.data.size must be an integer >= 1, got {d.size!r}")
    for where, group in _net_groups(config, "config"):
        _validate_net(group, where)
    for name, o in (config.get("optim") or {}).items():
        where = f"config.optim.{name}"
        if not isinstance(o, (ConfigDict, dict)):
            _fail(f"{where} must be a group (name, lr, b1, ...), got {o!r}")
        checks = (("lr", lambda v: v >= 0, ">= 0"), ("b1", lambda v: 0 <= v < 1, "in [0, 1)"),
                  ("b2", lambda v: 0 <= v < 1, "in [0, 1)"), ("eps", lambda v: v > 0, "> 0"),
                  ("clip", lambda v: v >= 0, ">= 0"), ("weight_decay", lambda v: v >= 0, ">= 0"),
                  ("warmup_img", lambda v: v >= 0, ">= 0"), ("warmup_steps", lambda v: v >= 0, ">= 0"),
                  ("cooldown_frac", lambda v: 0 <= v < 1, "in [0, 1)"))
        for k, ok, what in checks:
            if k in o and o[k] is not None and (not _is_num(o[k]) or o[k] != o[k] or abs(o[k]) == float("inf")
                                                  or not ok(o[k])):
                _fail(f"{where}.{k} must be a finite number {what}, got {o[k]!r}")
    e = config.get("ema") or {}
    if "halflife_img" in e and (not _is_num(e["halflife_img"]) or not e["halflife_img"] > 0):
        _fail(f"config.ema.halflife_img must be > 0, got {e['halflife_img']!r}")
    r = e.get("rampup")
    if r is not None and (not _is_num(r) or r < 0):
        _fail(f"config.ema.rampup must be >= 0 (or None), got {r!r}")
    nfe = (config.get("sample") or {}).get("nfe")
    if nfe is not None and (not _is_int(nfe) or nfe < 0 or (nfe == 0 and config.method not in NFE0_METHODS)):
        _fail(f"config.sample.nfe must be an integer >= 1, got {nfe!r}")
    if num_devices is not None:
        n = mesh_size(config.get("mesh") or {"data": -1}, num_devices, num_processes)
        if config.batch_size % n:
            _fail(f"batch_size {config.batch_size} is not divisible by the {n} devices of the mesh")


NFE0_METHODS = ("cdrl",)  # sample.nfe = 0 means something there (no Langevin steps)


def nfe_problem(nfe, method) -> str | None:
    """Why ``--nfe`` is not usable for ``method`` (None: fine or not given). 0 means "no
    steps" only where a method defines it (cdrl: no Langevin steps); elsewhere it would
    silently become the default."""
    if nfe is None:
        return None
    if nfe < 0 or (nfe == 0 and method not in NFE0_METHODS):
        return f"--nfe must be >= 1{' (0: no Langevin steps)' if method in NFE0_METHODS else ''}, got {nfe}"
    return None


def read_sampling_config(workdir: str, nfe=None, allow_modules=()) -> dict:
    """A workdir's config.json for the commands that sample it (sample, evaluate), checked before
    any checkpoint is loaded: a ConfigError (one line) when there is none, when it names a module
    outside genmod not in ``allow_modules``, or when ``nfe`` is unusable for its method."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ConfigError(f"no config.json in {workdir}: not a genmod workdir")
    trust_modules(*allow_modules)
    cfg = read_workdir_config(workdir)
    check_modules(cfg, path)
    problem = nfe_problem(nfe, cfg.get("method"))
    if problem:
        raise ConfigError(problem)
    return cfg


def _net_groups(node, where):
    """Every group that describes a network (it has an ``arch`` key), e.g. config.net,
    config.teacher.net, config.critic_net."""
    for k, v in node.items():
        if isinstance(v, (ConfigDict, dict)):
            if "arch" in v:
                yield f"{where}.{k}", v
            else:
                yield from _net_groups(v, f"{where}.{k}")


def _validate_net(net, where):
    """Layer widths, depths and counts: positive. A scalar int in a net group is >= 0 (0 turns
    a feature off, e.g. ``fourier``); an int inside a tuple (``hidden``, ``channel_mult``,
    ``attn_resolutions``) is >= 1; a float is finite and >= 0 (dropout, scales)."""
    if not isinstance(net, (ConfigDict, dict)):
        _fail(f"{where} must be a group of keys, got {net!r}")
    for k, v in net.items():
        if isinstance(v, (ConfigDict, dict)):
            _validate_net(v, f"{where}.{k}")
        elif isinstance(v, (tuple, list)):
            if any(_is_int(x) and x < 1 for x in v):
                _fail(f"{where}.{k} must hold positive integers, got {tuple(v)!r}")
        elif _is_int(v) and v < 0:
            _fail(f"{where}.{k} must be >= 0, got {v!r}")
        elif isinstance(v, float) and (v != v or v < 0 or v == float("inf")):
            _fail(f"{where}.{k} must be a finite number >= 0, got {v!r}")


# -- code a config may name: packaged modules, or ones the user named on the command line ------
TRUSTED_MODULES: set[str] = set()


def external_modules(config) -> set[str]:
    """Python modules outside genmod that ``config`` would import: a dotted ``method`` and
    ``module:function`` values of any ``arch`` key."""
    d = config.to_dict() if isinstance(config, ConfigDict) else dict(config)
    out = set()
    m = d.get("method")
    if isinstance(m, str) and "." in m and not m.startswith("genmod."):
        out.add(m)
    for k, v in flat(d).items():
        if k.split(".")[-1] == "arch" and isinstance(v, str) and ":" in v:
            mod = v.split(":")[0]
            if not mod.startswith("genmod."):
                out.add(mod)
    return out


def trust_modules(*modules: str):
    """Allow workdir configs to import these modules (what ``--allow_module`` and a launch
    config the user chose name)."""
    TRUSTED_MODULES.update(m for m in modules if m)


def check_modules(config, source: str):
    """Refuse a config read from a file (a workdir's ``config.json``) that would import a module
    outside genmod the user has not named: such a file must not run code."""
    bad = sorted(external_modules(config) - TRUSTED_MODULES)
    if bad:
        raise ConfigError(f"{source} names module {bad[0]!r} outside genmod; it is imported only when you "
                          f"name it: add --allow_module {bad[0]}")
