"""Safe import of NVlabs/edm networks (``edm-*.pkl``, ``network-snapshot-*.pkl``, or a plain
PyTorch state dict) into genmod parameters and a teacher workdir.

EDM pickles its networks with ``torch_utils.persistence``: every network object is recorded as
``_reconstruct_persistent_obj(meta)`` where ``meta`` holds the *Python source* of the network
module (``module_src``), and a plain ``pickle.load`` ``exec``s that source. Here a restricted
unpickler resolves only a whitelist of globals: the persistence hook becomes a function that
returns the recorded ``class_name`` and ``state`` (``_init_kwargs``, ``_parameters``,
``_buffers``, ``_modules``) and drops the source unread, tensor storages are read with
``torch.load(weights_only=True)``, and containers / numpy scalars become inert values. Any
other global is refused before it is imported. The recorded state is then mapped by class
name: the preconditioner (EDM / VP / VE) and the backbone (SongUNet DDPM++ / NCSN++,
DhariwalUNet ADM) with EDM's constructor defaults filled in, and the weights checked
key-by-key and shape-by-shape against the genmod network built from them.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import tempfile

import numpy as np


class EdmPickleError(ValueError):
    """Not an importable EDM network (one clear line)."""


# -- the restricted unpickler -------------------------------------------------------------------


@dataclasses.dataclass
class Persistent:
    """A ``torch_utils.persistence`` object as recorded: class name and ``__dict__``; the
    embedded module source is never kept, let alone run."""

    class_name: str
    state: dict


class _Container:
    """Stand-in for torch.nn.ModuleDict / ModuleList / Sequential: keeps the pickled
    ``__dict__`` (its ``_modules``) and nothing else."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise EdmPickleError("malformed module container in the pickle")
        self.state = state


class _EasyDict(dict):
    """Stand-in for dnnlib.EasyDict (a plain dict here)."""


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str) \
            or not isinstance(meta.get("state"), dict):
        raise EdmPickleError("malformed torch_utils.persistence record in the pickle")
    return Persistent(meta["class_name"], dict(meta["state"]))


def _load_from_bytes(b):
    """A tensor storage, as ``torch.save`` wrote it: read with ``weights_only=True``."""
    import torch

    if not isinstance(b, (bytes, bytearray)):
        raise EdmPickleError("malformed tensor storage in the pickle")
    return torch.load(io.BytesIO(bytes(b)), map_location="cpu", weights_only=True)


def _to_numpy(t):
    import torch

    t = t.detach().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return t.numpy().copy()


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_):
    import torch

    if not isinstance(storage, (torch.storage.TypedStorage, torch.storage.UntypedStorage)):
        raise EdmPickleError("malformed tensor in the pickle (its storage is not a torch storage)")
    return _to_numpy(torch._utils._rebuild_tensor(storage, int(storage_offset), tuple(size), tuple(stride)))


def _rebuild_parameter(data, *_):
    if not isinstance(data, np.ndarray):
        raise EdmPickleError("malformed parameter in the pickle")
    return data


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise EdmPickleError("refused a numpy object scalar in the pickle")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _np_dtype(obj, align=False, copy=False):
    d = np.dtype(obj, align, copy)
    if d.hasobject:
        raise EdmPickleError("refused a numpy object dtype in the pickle")
    return d


def _np_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise EdmPickleError("refused a numpy array subclass in the pickle")
    return np.ndarray.__new__(np.ndarray, shape, _np_dtype(dtype))


def _np_frombuffer(buf, dtype, shape, order):
    """numpy's protocol-5 array record."""
    return np.frombuffer(bytes(buf), dtype=_np_dtype(dtype)).reshape(shape, order=order).copy()


def _latin1_bytes(text, encoding="latin1"):
    """How protocol-2 pickles spell bytes (``_codecs.encode(str, 'latin1')``)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise EdmPickleError("refused _codecs.encode in the pickle (only latin1 bytes are allowed)")
    return text.encode("latin1")


_GLOBALS = {
    ("_codecs", "encode"): _latin1_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.nn.modules.container", "ModuleDict"): _Container,
    ("torch.nn.modules.container", "ModuleList"): _Container,
    ("torch.nn.modules.container", "Sequential"): _Container,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("numpy", "dtype"): _np_dtype,
    ("numpy", "ndarray"): np.ndarray,
}
for _m in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _GLOBALS[(_m, "scalar")] = _np_scalar
    _GLOBALS[(_m, "_reconstruct")] = _np_reconstruct
for _m in ("numpy.core.numeric", "numpy._core.numeric"):
    _GLOBALS[(_m, "_frombuffer")] = _np_frombuffer


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ``_GLOBALS`` (EDM's persistence records, tensors, containers, numpy
    scalars); anything else (``os.system``, ``builtins.exec``, an EDM class itself, ...) is
    refused before its module is imported."""

    def find_class(self, module, name):
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise EdmPickleError(f"refused pickle global {module}.{name}: only EDM network records, "
                                 "tensors, containers and numpy scalars are allowed (no code from the "
                                 "file is run)") from None

    def persistent_load(self, pid):
        raise EdmPickleError("refused a persistent id in the pickle (not an EDM network pickle; "
                             "a torch.save file needs --arch)")


def read_pickle(path: str):
    """The pickle's objects with every network as a :class:`Persistent` (no code runs)."""
    with open(path, "rb") as f:
        head = f.read(4)
        if head.startswith(b"PK"):
            raise EdmPickleError(f"{path} is a zip archive (torch.save), not an EDM pickle: "
                                 "for a state dict pass --arch")
        f.seek(0)
        try:
            return RestrictedUnpickler(f).load()
        except EdmPickleError:
            raise
        except Exception as e:  # a truncated or foreign pickle raises almost anything
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise EdmPickleError(f"{path}: not a readable pickle ({type(e).__name__}: {msg})") from None


# -- the recorded state -> a network description ------------------------------------------------

# EDM's constructor defaults (training/networks.py): a record holds only the kwargs it was given.
PRECOND_DEFAULTS = {
    "EDMPrecond": dict(label_dim=0, use_fp16=False, sigma_min=0.0, sigma_max=math.inf, sigma_data=0.5,
                       model_type="DhariwalUNet"),
    "VPPrecond": dict(label_dim=0, use_fp16=False, beta_d=19.9, beta_min=0.1, M=1000, epsilon_t=1e-5,
                      model_type="SongUNet"),
    "VEPrecond": dict(label_dim=0, use_fp16=False, sigma_min=0.02, sigma_max=100.0, model_type="SongUNet"),
}
MODEL_DEFAULTS = {
    "SongUNet": dict(label_dim=0, augment_dim=0, model_channels=128, channel_mult=[1, 2, 2, 2], channel_mult_emb=4,
                     num_blocks=4, attn_resolutions=[16], dropout=0.10, label_dropout=0,
                     embedding_type="positional", channel_mult_noise=1, encoder_type="standard",
                     decoder_type="standard", resample_filter=[1, 1]),
    "DhariwalUNet": dict(label_dim=0, augment_dim=0, model_channels=192, channel_mult=[1, 2, 3, 4],
                         channel_mult_emb=4, num_blocks=3, attn_resolutions=[32, 16, 8], dropout=0.10,
                         label_dropout=0),
}
GENMOD_ARCH = {"SongUNet": "unet", "DhariwalUNet": "adm"}
PRECOND_KIND = {"EDMPrecond": "edm", "VPPrecond": "vp", "VEPrecond": "ve"}
_SHAPE_KEYS = ("img_resolution", "in_channels", "out_channels", "label_dim")


@dataclasses.dataclass
class EdmNetwork:
    """What an import needs: preconditioner and backbone (EDM class names and their complete
    kwargs) and the backbone's weights and buffers by PyTorch name (no ``model.`` prefix)."""

    precond: str
    precond_kwargs: dict
    model: str
    model_kwargs: dict
    state: dict


def _plain(v):
    """Recorded kwargs as JSON-able Python values (numpy scalars, tuples)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _kwargs(obj: Persistent, defaults: dict, what: str) -> dict:
    st = obj.state
    if st.get("_init_args"):
        raise EdmPickleError(f"{what} {obj.class_name} was built with positional arguments; cannot map them")
    kw = st.get("_init_kwargs")
    if not isinstance(kw, dict):
        raise EdmPickleError(f"{what} {obj.class_name} has no recorded init_kwargs")
    return {**defaults, **_plain(dict(kw))}


def _collect(obj, prefix: str, out: dict):
    """PyTorch ``state_dict()`` of a recorded module tree (parameters and buffers)."""
    st = obj.state
    for group in ("_parameters", "_buffers"):
        for k, v in (st.get(group) or {}).items():
            if v is None:
                continue
            if not isinstance(v, np.ndarray):
                raise EdmPickleError(f"{prefix}{k} is not a tensor")
            out[prefix + k] = v
    for k, m in (st.get("_modules") or {}).items():
        if m is None:
            continue
        if not isinstance(m, (Persistent, _Container)):
            raise EdmPickleError(f"unexpected module {prefix}{k} ({type(m).__name__}) in the pickle")
        _collect(m, f"{prefix}{k}.", out)
    return out


def network_from_pickle(obj) -> EdmNetwork:
    """The network in an unpickled EDM file: a snapshot dict (its ``ema``) or a bare record."""
    if isinstance(obj, dict) and "ema" in obj:
        obj = obj["ema"]
    if not isinstance(obj, Persistent):
        raise EdmPickleError("no EDM network in the pickle (expected a network-snapshot dict with 'ema' "
                             "or a persistence-pickled preconditioner)")
    if obj.class_name not in PRECOND_DEFAULTS:
        hint = " (iDDPMPrecond is not supported)" if obj.class_name == "iDDPMPrecond" else ""
        raise EdmPickleError(f"unsupported preconditioner {obj.class_name!r}{hint}; supported: "
                             f"{', '.join(PRECOND_DEFAULTS)}")
    pkw = _kwargs(obj, PRECOND_DEFAULTS[obj.class_name], "preconditioner")
    model = (obj.state.get("_modules") or {}).get("model")
    if not isinstance(model, Persistent):
        raise EdmPickleError(f"{obj.class_name} has no recorded backbone 'model'")
    if model.class_name not in MODEL_DEFAULTS:
        raise EdmPickleError(f"unsupported backbone {model.class_name!r}; supported: {', '.join(MODEL_DEFAULTS)}")
    if model.class_name != pkw["model_type"]:
        raise EdmPickleError(f"inconsistent record: model_type {pkw['model_type']!r} but the backbone is "
                             f"{model.class_name!r}")
    mkw = _kwargs(model, MODEL_DEFAULTS[model.class_name], "backbone")
    return EdmNetwork(obj.class_name, pkw, model.class_name, mkw, _collect(model, "", {}))


def load_pickle(path: str) -> EdmNetwork:
    return network_from_pickle(read_pickle(path))


# EDM train.py's --arch presets (plus the constructors' defaults): for plain state dicts.
ARCH_PRESETS = {
    "ddpmpp": ("SongUNet", dict(embedding_type="positional", encoder_type="standard", decoder_type="standard",
                                channel_mult_noise=1, resample_filter=[1, 1], model_channels=128,
                                channel_mult=[2, 2, 2], dropout=0.13)),
    "ncsnpp": ("SongUNet", dict(embedding_type="fourier", encoder_type="residual", decoder_type="standard",
                                channel_mult_noise=2, resample_filter=[1, 3, 3, 1], model_channels=128,
                                channel_mult=[2, 2, 2], dropout=0.13)),
    "adm": ("DhariwalUNet", dict(model_channels=192, channel_mult=[1, 2, 3, 4], dropout=0.10)),
}
PRECOND_CLASS = {v: k for k, v in PRECOND_KIND.items()}


def load_state_dict(path: str, arch: str, precond: str = "edm", arch_kwargs: dict | None = None,
                    precond_kwargs: dict | None = None) -> EdmNetwork:
    """A plain PyTorch state dict (``torch.save(net.state_dict())`` of a preconditioner or its
    backbone), read with ``torch.load(weights_only=True)``. ``arch``: EDM's ``--arch`` preset;
    resolution, channels, label and augment dims are read off the weights' shapes."""
    import torch

    if arch not in ARCH_PRESETS:
        raise EdmPickleError(f"unknown --arch {arch!r}; valid: {', '.join(ARCH_PRESETS)}")
    if precond not in PRECOND_CLASS:
        raise EdmPickleError(f"unknown --precond {precond!r}; valid: {', '.join(PRECOND_CLASS)}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise EdmPickleError(f"{path}: not a weights-only PyTorch file ({type(e).__name__}: {msg})") from None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise EdmPickleError(f"{path}: expected a state dict (name -> tensor)")
    state = {(k[len("model."):] if k.startswith("model.") else k): _to_numpy(v) for k, v in sd.items()}
    model, preset = ARCH_PRESETS[arch]
    conv = [k for k in state if k.startswith("enc.") and k.endswith("_conv.weight")]
    if len(conv) != 1:
        raise EdmPickleError(f"{path}: no single input conv 'enc.RxR_conv.weight' among the keys: not an "
                             "EDM U-Net state dict")
    res = int(conv[0].split(".")[1].split("x")[0])
    channels = int(state[conv[0]].shape[1])
    shape_kw = dict(img_resolution=res, in_channels=channels, out_channels=channels,
                    label_dim=int(state["map_label.weight"].shape[1]) if "map_label.weight" in state else 0,
                    augment_dim=int(state["map_augment.weight"].shape[1]) if "map_augment.weight" in state else 0)
    mkw = {**MODEL_DEFAULTS[model], **preset, **shape_kw, **(arch_kwargs or {})}
    pcls = PRECOND_CLASS[precond]
    pkw = {**PRECOND_DEFAULTS[pcls], "label_dim": mkw["label_dim"], "model_type": model,
           "img_resolution": res, "img_channels": channels, **(precond_kwargs or {})}
    return EdmNetwork(pcls, pkw, model, mkw, state)


# -- EdmNetwork -> genmod config + params -------------------------------------------------------


def _check_kwargs(net: EdmNetwork):
    mkw, pkw = net.model_kwargs, net.precond_kwargs
    for k in _SHAPE_KEYS[:3]:
        if k not in mkw:
            raise EdmPickleError(f"{net.model} record lacks {k}")
    if mkw["in_channels"] != mkw["out_channels"]:
        raise EdmPickleError(f"{net.model}: in_channels {mkw['in_channels']} != out_channels {mkw['out_channels']}")
    for pk, mk in (("img_resolution", "img_resolution"), ("img_channels", "in_channels"), ("label_dim", "label_dim")):
        if pk in pkw and pkw[pk] != mkw[mk]:
            raise EdmPickleError(f"inconsistent record: {net.precond}.{pk}={pkw[pk]} but {net.model}.{mk}={mkw[mk]}")
    unknown = sorted(set(mkw) - set(MODEL_DEFAULTS[net.model]) - set(_SHAPE_KEYS))
    if unknown:
        raise EdmPickleError(f"{net.model}: unsupported kwargs {', '.join(unknown)}")
    # The preconditioner's other kwargs went to the backbone (**model_kwargs): they must agree.
    for k in sorted(set(pkw) - set(PRECOND_DEFAULTS[net.precond]) - {"img_resolution", "img_channels"}):
        if k not in MODEL_DEFAULTS[net.model]:
            raise EdmPickleError(f"{net.precond}: unsupported kwarg {k}")
        if pkw[k] != mkw[k]:
            raise EdmPickleError(f"inconsistent record: {net.precond}.{k}={pkw[k]!r} but {net.model}.{k}={mkw[k]!r}")


def _vp_sigma(t, beta_d, beta_min):
    return math.sqrt(math.exp(0.5 * beta_d * t ** 2 + beta_min * t) - 1)


def to_genmod(net: EdmNetwork):
    """(config, params): a complete ``edm``-method config for the network and the
    preconditioned denoiser's params (backbone under ``'net'``, as ``state.params['net']`` holds
    them), checked key by key and shape by shape against the network the config builds."""
    import jax
    import jax.numpy as jnp
    import ml_collections

    from genmod import config_lib, edm, nets
    from genmod.methods import edm as edm_method
    from genmod.nets.unet import params_from_torch_state_dict

    _check_kwargs(net)
    mkw, pkw = dict(net.model_kwargs), net.precond_kwargs
    res, ch, label_dim = mkw.pop("img_resolution"), mkw.pop("in_channels"), mkw.pop("label_dim")
    mkw.pop("out_channels")
    params, freqs = params_from_torch_state_dict(net.state)
    if net.model == "SongUNet" and mkw["embedding_type"] == "fourier":
        if freqs is None:
            raise EdmPickleError("NCSN++ network without its Fourier frequencies (map_noise.freqs)")
        need = mkw["model_channels"] * mkw["channel_mult_noise"] // 2
        if np.shape(freqs) != (need,):
            raise EdmPickleError(f"the weights do not fit the network the record describes: map_noise.freqs "
                                 f"has {np.size(freqs)} frequencies, the network needs {need}")
        mkw["fourier_freqs"] = [float(f) for f in np.asarray(freqs, np.float32)]
    elif freqs is not None:
        raise EdmPickleError("unexpected map_noise.freqs buffer for a positional embedding")
    mkw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in mkw.items()}

    c = config_lib.base()
    c.method = "edm"
    c.edm = edm_method.defaults()
    kind = PRECOND_KIND[net.precond]
    # EDM's generate.py clamps its sampler range to the network's supported one.
    if kind == "edm":
        c.edm.sigma_data = float(pkw["sigma_data"])
        lo, hi = float(pkw["sigma_min"]), float(pkw["sigma_max"])
    elif kind == "vp":
        c.edm.precond = "vp"
        c.edm.precond_kwargs = ml_collections.ConfigDict(dict(beta_d=float(pkw["beta_d"]),
                                                              beta_min=float(pkw["beta_min"]), M=int(pkw["M"])))
        lo = _vp_sigma(float(pkw["epsilon_t"]), pkw["beta_d"], pkw["beta_min"])
        hi = _vp_sigma(1.0, pkw["beta_d"], pkw["beta_min"])
    else:
        c.edm.precond = "ve"
        lo, hi = float(pkw["sigma_min"]), float(pkw["sigma_max"])
    c.edm.sigma_min, c.edm.sigma_max = max(c.edm.sigma_min, lo), min(c.edm.sigma_max, hi)
    # No dataset travels with a network: a synthetic source of the right shape keeps the
    # workdir loadable by every tool.
    c.data.source, c.data.shape, c.data.num_classes = f"synthetic:{res}x{res}x{ch}", (res, res, ch), label_dim
    c.net = ml_collections.ConfigDict(dict(arch=GENMOD_ARCH[net.model], **mkw))
    c.total_steps = 0  # a finished run: launching it again trains nothing

    D = edm.make_precond(kind, nets.build(c.net, c.data.shape, label_dim), c.edm.sigma_data,
                         **dict(c.edm.get("precond_kwargs") or {}))
    x = jnp.zeros((1, res, res, ch))
    y = jnp.zeros((1, label_dim)) if label_dim else None
    try:
        want = jax.eval_shape(lambda: D.init(jax.random.PRNGKey(0), x, jnp.ones((1,)), y))["params"]["net"]
    except ValueError as e:  # kwargs the genmod network rejects (e.g. a resolution not divisible)
        raise EdmPickleError(f"cannot build {net.model} from the record: {str(e).splitlines()[0]}") from None
    check_params(params, want)
    bad = [k for k, v in net.state.items() if not np.isfinite(v).all()]
    if bad:
        raise EdmPickleError(f"non-finite weights in {len(bad)} tensors (e.g. {bad[0]})")
    return c, {"net": params}


def check_params(got: dict, want) -> None:
    """Same keys and shapes, or one error naming what differs."""
    from flax.traverse_util import flatten_dict

    g = {"/".join(k): v.shape for k, v in flatten_dict(got).items()}
    w = {"/".join(k): tuple(v.shape) for k, v in flatten_dict(want).items()}
    missing, extra = sorted(set(w) - set(g)), sorted(set(g) - set(w))
    bad = sorted(k for k in set(g) & set(w) if tuple(g[k]) != w[k])
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if extra:
            parts.append(f"unexpected {len(extra)} (e.g. {', '.join(extra[:3])})")
        if bad:
            parts.append(f"shape mismatch {len(bad)} (e.g. {bad[0]}: {tuple(g[bad[0]])} vs {w[bad[0]]})")
        raise EdmPickleError("the weights do not fit the network the record describes: " + "; ".join(parts))


# -- the workdir ---------------------------------------------------------------------------------


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_workdir(workdir: str, config, params: dict, provenance: dict) -> None:
    """A finished ``edm`` run: ``config.json``, a checkpoint at step 0 of stage ``main`` with the
    weights as both params and EMA (fresh optimizer state), and ``converted_from.json``.
    Written beside ``workdir`` and renamed into place, so a failure leaves nothing behind."""
    import jax

    from genmod import config_lib, method as method_lib, sharding, train

    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and (not os.path.isdir(workdir) or os.listdir(workdir)):
        raise EdmPickleError(f"workdir {workdir} exists and is not empty; not overwriting it")
    parent = os.path.dirname(workdir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(workdir) + ".converting-", dir=parent)
    try:
        mesh = sharding.make_mesh({"data": -1})
        run = next(train.iter_stages(config, tmp, mesh, train._spec(config), async_save=False))
        m = run.method
        state = method_lib.new_state(run.rng, {"net": jax.device_put(params)}, {"net": m.tx}, ema=("net",))
        if jax.tree.structure(state) != jax.tree.structure(run.abstract):
            raise EdmPickleError("internal: the converted state does not match the edm method's state")
        # Saved from one device (restores onto any mesh); the meta is what the loop writes.
        run.ckpt.save(0, state, {"stage": run.stage.name, "step": 0, "finished": True, "data_position": 0},
                      force=True)
        run.ckpt.close()
        config_lib.save_json(config, tmp)
        with open(os.path.join(tmp, "converted_from.json"), "w") as f:
            json.dump(provenance, f, indent=2)
        if os.path.isdir(workdir):
            os.rmdir(workdir)  # empty (checked above)
        os.replace(tmp, workdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def convert(path: str, workdir: str, arch: str | None = None, precond: str = "edm",
            arch_kwargs: dict | None = None, precond_kwargs: dict | None = None) -> dict:
    """Import ``path`` (EDM pickle, or a state dict when ``arch`` is given) into ``workdir``.
    Returns the provenance record written beside it."""
    if not os.path.isfile(path):
        raise EdmPickleError(f"no such file: {path}")
    wd = os.path.abspath(workdir)
    if os.path.exists(wd) and (not os.path.isdir(wd) or os.listdir(wd)):
        raise EdmPickleError(f"workdir {wd} exists and is not empty; not overwriting it")
    if arch is None:
        net, fmt = load_pickle(path), "edm-pickle"
    else:
        net, fmt = load_state_dict(path, arch, precond, arch_kwargs, precond_kwargs), "state-dict"
    config, params = to_genmod(net)
    clean = lambda d: {k: (None if isinstance(v, float) and not math.isfinite(v) else v)  # noqa: E731
                       for k, v in d.items()}
    provenance = dict(source=os.path.abspath(path), sha256=_sha256(path), format=fmt, precond=net.precond,
                      precond_kwargs=clean(net.precond_kwargs), model=net.model, model_kwargs=net.model_kwargs,
                      parameters=int(sum(np.prod(v.shape) for k, v in net.state.items()
                                         if not k.endswith(("resample_filter", "freqs")))),
                      note="float32 in genmod" + (" (EDM ran it in fp16 on GPU)"
                                                  if net.precond_kwargs.get("use_fp16") else ""))
    write_workdir(workdir, config, params, provenance)
    return provenance
