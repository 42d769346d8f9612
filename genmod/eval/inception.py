"""Inception-v3 exactly as pytorch-fid's FID network, in Flax linen (NHWC).

pytorch-fid (``pytorch_fid/inception.py``) builds torchvision's Inception-v3 with the TF
2015-12-05 weights and patches four block types to reproduce TF's graph:

* FIDInceptionA / FIDInceptionC / FIDInceptionE_1: the pool branch is a 3x3/1 average pool
  with padding 1 that does **not** count the padding (``count_include_pad=False``);
* FIDInceptionE_2 (Mixed_7c): the pool branch is a 3x3/1 **max** pool;
* every conv is conv(no bias) -> BatchNorm(eps=1e-3, running statistics) -> ReLU.

The feature path is Conv2d_1a..4a, Mixed_5b..7c, global average pool: the 2048-d "pool3"
features. Input preprocessing is pytorch-fid's: uint8 -> float /255 -> bilinear resize to
299x299 (``align_corners=False``, no antialias) -> 2x - 1.

Parameter names follow torchvision's module names (``Mixed_5b/branch1x1/conv/kernel``) so the
converter in ``genmod.eval.convert`` is a rename plus an OIHW -> HWIO transpose.
"""
from __future__ import annotations

import hashlib
import os
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from genmod.eval.fid import read_npz
from genmod.nets import onednn

DEFAULT_WEIGHTS = os.path.join("checkpoints", "fid", "inception_fid.npz")
WEIGHTS_ENV = "GENMOD_FID_WEIGHTS"
CONVERT_CMD = ("python -m genmod.eval.convert pt_inception-2015-12-05-6726825d.pth "
               "--out checkpoints/fid/inception_fid.npz")
RESOLUTION = 299
FEATURE_DIM = 2048


class WeightsError(FileNotFoundError):
    """FID Inception weights missing or malformed (one clear line)."""


# ---------------------------------------------------------------------------------------------
# Network


class Conv(nn.Module):
    """Bias-free NHWC/HWIO convolution with symmetric zero padding (``nn.Conv``'s parameter
    layout). ``cpu_tricks`` computes the same numbers in forms XLA:CPU runs 1.5-3x faster:
    1x1 convolutions as a matmul, unpadded ones with one extra zero row/column that is then
    cut off (the padded result is identical where it overlaps); max pools likewise (below). Where
    ``genmod.nets.onednn`` is enabled, the other convolutions run on oneDNN (1.22x pytorch-fid's
    features against 1.08-1.16x, docs/benchmarks.md "Performance, round 9")."""
    features: int
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    precision: Any = "highest"
    cpu_tricks: bool = False

    @nn.compact
    def __call__(self, x):
        kh, kw = self.kernel
        k = self.param("kernel", nn.initializers.lecun_normal(), (kh, kw, x.shape[-1], self.features))
        if self.cpu_tricks and self.kernel == (1, 1) and self.strides == (1, 1) and self.padding == (0, 0):
            return jax.lax.dot_general(x, k[0, 0], (((3,), (0,)), ((), ())), precision=self.precision)
        pad = [(p, p) for p in self.padding]
        if self.cpu_tricks and onednn.enabled(x, k):
            return onednn.conv(x, k, strides=self.strides, padding=pad)
        valid = self.cpu_tricks and self.padding == (0, 0)
        if valid:
            pad = [(0, 1), (0, 1)]
        y = jax.lax.conv_general_dilated(x, k, self.strides, pad, precision=self.precision,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if valid:
            oh, ow = ((x.shape[1] - kh) // self.strides[0] + 1, (x.shape[2] - kw) // self.strides[1] + 1)
            y = y[:, :oh, :ow]
        return y


class BasicConv(Conv):
    """torchvision BasicConv2d: conv (no bias) -> BatchNorm(eps=1e-3, inference) -> ReLU. It takes
    ``Conv``'s fields (subclassed for them) and wraps a ``Conv`` named ``conv``, as torchvision."""

    @nn.compact
    def __call__(self, x):
        x = Conv(self.features, self.kernel, self.strides, self.padding, self.precision,
                 self.cpu_tricks, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool_same(x):
    """avg_pool2d(k=3, s=1, p=1, count_include_pad=False): TF 'SAME' average pooling."""
    return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_separable(x, stride):
    """3x3 max pool as two 1-D passes of strided slices: the identical maximum (max is
    exact), which XLA:CPU runs 2-6x faster than reduce_window."""
    for axis in (1, 2):
        out = (x.shape[axis] - 3) // stride + 1
        taps = [jax.lax.slice_in_dim(x, i, i + stride * (out - 1) + 1, stride, axis) for i in range(3)]
        x = jnp.maximum(jnp.maximum(taps[0], taps[1]), taps[2])
    return x


def _max_pool_same(x, cpu_tricks=False):
    """max_pool2d(k=3, s=1, p=1): padding never wins (-inf)."""
    if cpu_tricks:
        return _max_pool_separable(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf), 1)
    return nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))


def _max_pool_reduce(x, cpu_tricks=False):
    """max_pool2d(k=3, s=2), no padding."""
    if cpu_tricks:
        return _max_pool_separable(x, 2)
    return nn.max_pool(x, (3, 3), (2, 2), padding="VALID")


class _Block(nn.Module, kw_only=True):
    """A block whose convolutions all share its ``precision`` and ``cpu_tricks`` (keyword-only,
    so each block's own fields stay positional: ``InceptionA(32, precision=...)``)."""
    precision: Any = "highest"
    cpu_tricks: bool = False

    @property
    def conv(self):
        """``BasicConv`` with this block's settings."""
        return partial(BasicConv, precision=self.precision, cpu_tricks=self.cpu_tricks)


class InceptionA(_Block):  # FIDInceptionA
    pool_features: int

    @nn.compact
    def __call__(self, x):
        C = self.conv
        b1 = C(64, (1, 1), name="branch1x1")(x)
        b5 = C(48, (1, 1), name="branch5x5_1")(x)
        b5 = C(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = C(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = C(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = C(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = C(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):  # torchvision InceptionB (Mixed_6a), unpatched

    @nn.compact
    def __call__(self, x):
        C = self.conv
        b3 = C(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
        bd = C(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = C(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = C(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_reduce(x, self.cpu_tricks)], axis=-1)


class InceptionC(_Block):  # FIDInceptionC
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        C = self.conv
        c7 = self.channels_7x7
        b1 = C(192, (1, 1), name="branch1x1")(x)
        b7 = C(c7, (1, 1), name="branch7x7_1")(x)
        b7 = C(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = C(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = C(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = C(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = C(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = C(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = C(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = C(192, (1, 1), name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):  # torchvision InceptionD (Mixed_7a), unpatched

    @nn.compact
    def __call__(self, x):
        C = self.conv
        b3 = C(192, (1, 1), name="branch3x3_1")(x)
        b3 = C(320, (3, 3), strides=(2, 2), name="branch3x3_2")(b3)
        b7 = C(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = C(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = C(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = C(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_reduce(x, self.cpu_tricks)], axis=-1)


class InceptionE(_Block):  # FIDInceptionE_1 (pool='avg') / FIDInceptionE_2 (pool='max')
    pool: str

    @nn.compact
    def __call__(self, x):
        C = self.conv
        b1 = C(320, (1, 1), name="branch1x1")(x)
        b3 = C(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([C(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              C(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = C(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = C(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([C(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              C(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
        pooled = _avg_pool_same(x) if self.pool == "avg" else _max_pool_same(x, self.cpu_tricks)
        bp = C(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3FID(_Block):
    """pytorch-fid ``InceptionV3([3])`` without its resize/normalise step: takes float NHWC
    in [-1, 1] (normally 299x299) and returns the (N, 2048) pool3 features."""

    @nn.compact
    def __call__(self, x):
        C = self.conv
        p = dict(precision=self.precision, cpu_tricks=self.cpu_tricks)
        x = C(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)
        x = C(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = C(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_reduce(x, self.cpu_tricks)
        x = C(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = C(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_reduce(x, self.cpu_tricks)
        x = InceptionA(32, **p, name="Mixed_5b")(x)
        x = InceptionA(64, **p, name="Mixed_5c")(x)
        x = InceptionA(64, **p, name="Mixed_5d")(x)
        x = InceptionB(**p, name="Mixed_6a")(x)
        x = InceptionC(128, **p, name="Mixed_6b")(x)
        x = InceptionC(160, **p, name="Mixed_6c")(x)
        x = InceptionC(160, **p, name="Mixed_6d")(x)
        x = InceptionC(192, **p, name="Mixed_6e")(x)
        x = InceptionD(**p, name="Mixed_7a")(x)
        x = InceptionE("avg", **p, name="Mixed_7b")(x)
        x = InceptionE("max", **p, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


def preprocess(images_uint8):
    """pytorch-fid's input path: uint8 NHWC -> /255 -> bilinear 299x299 (align_corners=False,
    no antialias; a no-op at 299) -> 2x - 1. Grey images are repeated to RGB."""
    x = jnp.asarray(images_uint8).astype(jnp.float32) / 255.0
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    n, h, w, c = x.shape
    if (h, w) != (RESOLUTION, RESOLUTION):
        x = jax.image.resize(x, (n, RESOLUTION, RESOLUTION, c), "bilinear", antialias=False)
    return 2.0 * x - 1.0


def features_fn(variables, images_uint8, precision="highest", cpu_tricks=False):
    """Pure function: uint8 NHWC batch -> (N, 2048) float32 pool3 features."""
    net = InceptionV3FID(precision=precision, cpu_tricks=cpu_tricks)
    return net.apply(variables, preprocess(images_uint8))


def init_variables(seed: int = 0, resolution: int = RESOLUTION):
    """Randomly initialised variables (tests, benchmarks; not meaningful features)."""
    x = jnp.zeros((1, resolution, resolution, 3), jnp.float32)
    return jax.jit(InceptionV3FID().init)(jax.random.key(seed), x)


def abstract_variables():
    x = jax.ShapeDtypeStruct((1, RESOLUTION, RESOLUTION, 3), jnp.float32)
    return jax.eval_shape(InceptionV3FID().init, jax.random.key(0), x)


# ---------------------------------------------------------------------------------------------
# Weights (.npz of named arrays, written by genmod.eval.convert)


def flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        name = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict) or hasattr(v, "items"):
            out.update(flatten(v, name))
        else:
            out[name] = v
    return out


def unflatten(flat):
    tree: dict = {}
    for name, v in flat.items():
        node = tree
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return tree


def content_sha256(flat: dict) -> str:
    """Hash of the variables themselves (names, dtypes, shapes, bytes), independent of how the
    npz was zipped: the provenance id stored with reference statistics and results."""
    h = hashlib.sha256()
    for name in sorted(flat):
        a = np.ascontiguousarray(flat[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def weights_path(path: str | None = None) -> str | None:
    """``path``, ``$GENMOD_FID_WEIGHTS``, ``checkpoints/fid/inception_fid.npz`` if it exists, else
    None: the weights fetched into the cache and converted there (``convert.fetched_weights``)."""
    return path or os.environ.get(WEIGHTS_ENV) or (DEFAULT_WEIGHTS if os.path.exists(DEFAULT_WEIGHTS) else None)


def load_variables(path: str | None = None):
    """Load converted weights -> (variables {'params', 'batch_stats'}, info dict with
    'sha256' (content hash), 'source_sha256' (of the .pth) and 'path')."""
    path = weights_path(path)
    if path is None:
        from genmod.eval.convert import fetched_weights

        path = fetched_weights()
    if not os.path.exists(path):
        raise WeightsError(f"FID Inception weights not found at {path}; download "
                           f"pt_inception-2015-12-05-6726825d.pth (pytorch-fid release 'fid_weights', "
                           f"see docs/fid.md) and run: python -m genmod.eval.convert "
                           f"pt_inception-2015-12-05-6726825d.pth --out {path}")
    arrays = read_npz(path, "FID weights", WeightsError, f"; re-run: {CONVERT_CMD}")
    flat = {k: v for k, v in arrays.items() if k.startswith(("params/", "batch_stats/"))}
    expected = {k: v for k, v in flatten(abstract_variables()).items()}
    missing = sorted(set(expected) - set(flat))
    extra = sorted(set(flat) - set(expected))
    bad = sorted(k for k in set(expected) & set(flat)
                 if tuple(flat[k].shape) != tuple(expected[k].shape) or flat[k].dtype != np.float32)
    if missing or extra or bad:
        first = (missing or extra or bad)[0]
        raise WeightsError(f"{path}: not an FID Inception weights file ({len(missing)} missing, "
                           f"{len(extra)} unexpected, {len(bad)} mis-shaped arrays, e.g. {first}); "
                           f"re-run: {CONVERT_CMD}")
    info = {"path": path, "sha256": content_sha256(flat)}
    for k in ("source_sha256", "source_name", "standard"):
        if f"meta/{k}" in arrays:
            info[k] = arrays[f"meta/{k}"].item()
    if "meta/sha256" in arrays and str(arrays["meta/sha256"]) != info["sha256"]:
        raise WeightsError(f"{path}: content hash {info['sha256'][:12]} differs from the stored "
                           f"{str(arrays['meta/sha256'])[:12]} (corrupt file); re-run: {CONVERT_CMD}")
    return unflatten({k: jnp.asarray(v) for k, v in flat.items()}), info


# ---------------------------------------------------------------------------------------------
# Batched, sharded feature extraction


def _local_mesh(mesh: Mesh | None) -> Mesh:
    """A 1-axis 'data' mesh over this process's devices (of ``mesh`` when given). Feature
    extraction never communicates across processes: each process embeds its own images and
    the float64 statistics are merged afterwards (``FeatureStats.allreduce``)."""
    if mesh is None:
        devices = jax.local_devices()
    else:
        if "data" not in mesh.axis_names:
            raise ValueError(f"mesh has no 'data' axis (axes: {mesh.axis_names})")
        if all(d.process_index == jax.process_index() for d in mesh.devices.flat):
            return mesh
        devices = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    return Mesh(np.asarray(devices), ("data",))


class InceptionFeatures:
    """Callable: uint8 NHWC numpy images (any count, any size, 1 or 3 channels) -> float32
    numpy (N, 2048) pool3 features, exactly pytorch-fid's.

    Images are fed ``batch_size`` at a time, the last chunk padded so each input resolution
    compiles once; the batch is sharded over the mesh's 'data' axis (and 'fsdp' if present)
    with parameters replicated. Convolutions run at 'highest' precision (no TF32/bf16 passes)
    unless ``precision`` says otherwise; ``cpu_tricks`` (default: when the mesh is on CPU)
    picks XLA:CPU-friendly forms of the same convolutions (see ``Conv``).
    """

    def __init__(self, variables=None, *, weights: str | None = None, batch_size: int = 250,
                 mesh: Mesh | None = None, precision="highest", cpu_tricks: bool | None = None):
        if variables is None:
            variables, self.info = load_variables(weights)
        else:
            self.info = {"path": None, "sha256": content_sha256(
                {k: np.asarray(v) for k, v in flatten(jax.device_get(variables)).items()})}
        self.mesh = _local_mesh(mesh)
        axes = tuple(a for a in ("data", "fsdp") if a in self.mesh.axis_names)
        shards = int(np.prod([self.mesh.shape[a] for a in axes]))
        self.batch_size = -(-int(batch_size) // shards) * shards
        self._batch = NamedSharding(self.mesh, P(axes))
        rep = NamedSharding(self.mesh, P())
        self.variables = jax.device_put(variables, rep)
        # Two programs: the resize compiles per input resolution, the network once per batch.
        self._pre = jax.jit(preprocess, in_shardings=self._batch, out_shardings=self._batch)
        if cpu_tricks is None:
            cpu_tricks = all(d.platform == "cpu" for d in self.mesh.devices.flat)
        net = InceptionV3FID(precision=precision, cpu_tricks=cpu_tricks)
        self._net = jax.jit(net.apply, in_shardings=(rep, self._batch), out_shardings=rep)

    @property
    def sha256(self) -> str:
        return self.info["sha256"]

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] not in (1, 3):
            raise ValueError(f"expected uint8 NHWC images with 1 or 3 channels, got "
                             f"{images.dtype} {images.shape}")
        out = []
        b = self.batch_size
        for i in range(0, len(images), b):
            chunk = images[i:i + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            x = self._pre(jax.device_put(chunk, self._batch))
            out.append(np.asarray(self._net(self.variables, x))[:n])
        if not out:
            return np.zeros((0, FEATURE_DIM), np.float32)
        return np.concatenate(out)
