"""Data sources and a deterministic, resumable, per-process-sharded batch pipeline.

A *source* is random access: ``len(src)`` and ``src.get(indices) -> dict`` of numpy arrays,
``image`` (uint8 NHWC) for image sets or ``x`` (float32) for point sets, plus ``label``.
The pipeline is stateless in the step: global batch ``s`` holds positions [sB, (s+1)B) of
an endless stream of seeded per-epoch permutations, so resuming at step ``s`` is exact and
each process loads only the rows its devices hold (together: each row exactly once).
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import posixpath
import queue
import struct
import tarfile
import threading
import zlib
from typing import Callable

import jax
import numpy as np

from genmod import toy

MIXTURES = "gmm:ring | gmm:grid | gmm:random:SEED | gmm:PATH.json"
SPECS = ("digits | synthetic:HxWxC | " + MIXTURES + " | checkerboard | moons | npz:PATH | idx:PATH | "
         "cifar10 | cifar10:PATH | imagenet64:DIR | tfds:NAME")


class DataError(ValueError):
    """A dataset is missing, corrupt or does not fit the model (one clear line)."""


class ArraySource:
    def __init__(self, name, split="train", **arrays):
        self.name, self.split, self.arrays = name, split, arrays

    def __len__(self):
        return len(next(iter(self.arrays.values())))

    def get(self, indices):
        return {k: v[indices] for k, v in self.arrays.items()}

    @property
    def element_shape(self):
        k = "image" if "image" in self.arrays else "x"
        return self.arrays[k].shape[1:]


def _images(x, name):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.dtype != np.uint8:
        raise DataError(f"{name}: expected uint8 images (N,H,W[,C]), got {x.dtype} {x.shape}")
    return x


def _digits(split):
    from sklearn.datasets import load_digits

    d = load_digits()
    img = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return ArraySource("digits", split, image=img, label=d.target.astype(np.int32))


def _npz(path, split):
    if not os.path.exists(path):
        raise DataError(f"dataset file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            xk = next((k for k in (f"x_{split}", "x", "images", "image") if k in keys), None)
            if xk is None:
                raise DataError(f"{path}: no image array for split {split!r} (keys: {', '.join(keys)})")
            yk = next((k for k in (f"y_{split}", "y", "labels", "label") if k in keys), None)
            arrays = {"image": _images(f[xk], path)}
            if yk is not None:
                arrays["label"] = f[yk].astype(np.int32)
    except (OSError, ValueError, EOFError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: cannot read npz ({e})") from None
    return ArraySource(os.path.basename(path), split, **arrays)


def read_idx(path):
    """Read an IDX file (MNIST format), gzipped or not."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            zero, dtype, ndim = struct.unpack(">HBB", f.read(4))
            if zero != 0 or dtype != 0x08:
                raise DataError(f"{path}: not a uint8 IDX file")
            shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
            data = np.frombuffer(f.read(), np.uint8)
    except (OSError, EOFError, struct.error) as e:
        raise DataError(f"{path}: cannot read IDX ({e})") from None
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated IDX file ({data.size} of {int(np.prod(shape))} values)")
    return data.reshape(shape)


def _idx(path, split):
    """``idx:DIR`` finds ``{train,t10k}-images-idx3-ubyte[.gz]`` (and labels) in DIR."""
    if os.path.isdir(path):
        pre = "train" if split == "train" else "t10k"
        names = [n for n in sorted(os.listdir(path)) if n.startswith(pre + "-images")]
        if not names:
            raise DataError(f"no {pre}-images-idx3-ubyte[.gz] in {path}")
        path = os.path.join(path, names[0])
    if not os.path.exists(path):
        raise DataError(f"dataset file not found: {path}")
    arrays = {"image": _images(read_idx(path), path)}
    lab = path.replace("images-idx3", "labels-idx1")
    if lab != path and os.path.exists(lab):
        arrays["label"] = read_idx(lab).astype(np.int32)
    return ArraySource(os.path.basename(path), split, **arrays)


def _chw_rows(x, where):
    """Rows of (N, 3*S*S) uint8 in CHW order, as CIFAR and downsampled ImageNet ship them -> NHWC."""
    side = int(round((x.shape[1] / 3) ** 0.5)) if x.ndim == 2 else 0
    if x.dtype != np.uint8 or side == 0 or 3 * side * side != x.shape[1]:
        raise DataError(f"{where}: expected data uint8 (N, 3*S*S) in CHW order, got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x.reshape(-1, 3, side, side).transpose(0, 2, 3, 1))


def _numpy_globals():
    try:
        from numpy._core import multiarray as ma  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma
    rec = ma._reconstruct
    return {("numpy.core.multiarray", "_reconstruct"): rec, ("numpy._core.multiarray", "_reconstruct"): rec,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}


def _line(e):
    """An exception as one short line."""
    return (str(e).splitlines() or [""])[0][:200] or type(e).__name__


class _Refused(pickle.UnpicklingError):
    pass


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: every other global (os.system, eval,
    ...) is refused before it is imported, so a tampered archive runs no code."""

    GLOBALS = _numpy_globals()

    def find_class(self, module, name):
        try:
            return self.GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"refused pickle global {module}.{name} (only numpy arrays are allowed)") from None


def load_batch_pickle(blob: bytes, where: str):
    """One official CIFAR batch (a Python 2 pickle: ``encoding='bytes'``), restricted as above."""
    try:
        return _NumpyUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except _Refused as e:
        raise DataError(f"{where}: {e}") from None
    except Exception as e:  # a corrupt pickle raises almost anything
        raise DataError(f"{where}: not a batch pickle ({_line(e)})") from None


CIFAR10_SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR10_LAYOUT = "the official cifar-10-python.tar.gz layout: cifar-10-batches-py/data_batch_1..5, test_batch"


def _cifar10(path, split, fetch=False):
    """``cifar10:PATH``: the official ``cifar-10-python.tar.gz`` (or its extracted
    ``cifar-10-batches-py``) read as distributed, so no conversion step and no TensorFlow.
    ``cifar10`` (``fetch``): that archive from the cache, fetched on first use (genmod.assets)."""
    if not path and not fetch:
        raise DataError("cifar10 needs a path, e.g. cifar10:data/cifar-10-python.tar.gz (or plain cifar10: "
                        "the official archive, fetched into the cache on first use)")
    names = CIFAR10_SPLITS.get(split)
    if names is None:
        raise DataError(f"cifar10 has splits train | test, got {split!r}")
    if fetch:
        from genmod import assets

        try:
            path = assets.fetch("cifar10")
        except assets.AssetError as e:
            raise DataError(str(e)) from None
    if not os.path.exists(path):
        raise DataError(f"dataset file not found: {path}")
    blobs = {}
    if os.path.isdir(path):
        sub = os.path.join(path, "cifar-10-batches-py")
        d = sub if os.path.isdir(sub) else path
        for n in names:
            if os.path.isfile(os.path.join(d, n)):
                with open(os.path.join(d, n), "rb") as f:
                    blobs[n] = f.read()
    else:
        try:
            with tarfile.open(path, "r:*") as tf:
                for m in tf:  # one sequential pass: seeking back in a .gz decompresses again
                    base = posixpath.basename(m.name)
                    if m.isfile() and base in names and base not in blobs:
                        blobs[base] = tf.extractfile(m).read()
        except tarfile.ReadError:
            raise DataError(f"{path}: cannot read tar archive (not a .tar or .tar.gz/.bz2/.xz)") from None
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: cannot read tar archive ({_line(e)})") from None
    missing = [n for n in names if n not in blobs]
    if missing:
        raise DataError(f"{path}: no {', '.join(missing)} (expected {CIFAR10_LAYOUT})")
    images, labels = [], []
    for n in names:
        where = f"{path}:{n}"
        d = load_batch_pickle(blobs.pop(n), where)
        x = d.get(b"data", d.get("data")) if isinstance(d, dict) else None
        y = d.get(b"labels", d.get("labels")) if isinstance(d, dict) else None
        if not isinstance(x, np.ndarray) or y is None or len(y) != len(x):
            raise DataError(f"{where}: expected a dict with b'data' (N, 3072) uint8 and N b'labels'")
        y = np.asarray(y, np.int64)
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{where}: labels outside 0..9")
        images.append(_chw_rows(x, where))
        labels.append(y.astype(np.int32))
    return ArraySource("cifar10", split, image=np.concatenate(images), label=np.concatenate(labels))


IMAGENET64_SPLITS = {"train": [f"train_data_batch_{i}.npz" for i in range(1, 11)], "val": ["val_data.npz"]}


def _imagenet64(path, split):
    """``imagenet64:DIR``: downsampled ImageNet 64x64 as distributed (the npz files of
    Imagenet64_train_part1_npz, _part2_npz and Imagenet64_val_npz anywhere under DIR):
    ``data`` (N, 12288) uint8 CHW rows, ``labels`` 1..1000 -> 0..999 (as tfds imagenet_resized).
    The split is held in memory (train: 15.7 GB)."""
    if not path:
        raise DataError("imagenet64 needs a directory, e.g. imagenet64:data/imagenet64")
    names = IMAGENET64_SPLITS.get("val" if split in ("val", "validation", "test") else split)
    if names is None:
        raise DataError(f"imagenet64 has splits train | val, got {split!r}")
    if not os.path.isdir(path):
        raise DataError(f"dataset directory not found: {path}")
    found = {}
    for root, dirs, files in os.walk(path):  # DIR, or the folders the three zips extract to
        dirs[:] = sorted(dirs) if os.path.relpath(root, path).count(os.sep) < 2 else []
        for f in sorted(set(files) & set(names)):
            found.setdefault(f, os.path.join(root, f))
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{path}: no {', '.join(missing)} (expected the Imagenet64_*_npz files: "
                        "train_data_batch_1..10.npz, val_data.npz)")
    files = []
    try:
        for n in names:  # labels first: sizes the output, so the images are copied only once
            files.append(np.load(found[n], allow_pickle=False))
            if not hasattr(files[-1], "files"):
                files.pop()
                raise DataError(f"{found[n]}: not an npz archive")
        labels = [np.asarray(f["labels"]).astype(np.int64).reshape(-1) - 1 for f in files]
        for n, y in zip(names, labels):
            if y.size and (y.min() < 0 or y.max() > 999):
                raise DataError(f"{found[n]}: labels outside 1..1000")
        images, start = None, 0
        for n, f, y in zip(names, files, labels):
            x = _chw_rows(f["data"], found[n])
            if len(x) != len(y):
                raise DataError(f"{found[n]}: {len(x)} images but {len(y)} labels")
            if images is None:
                images = np.empty((sum(map(len, labels)),) + x.shape[1:], np.uint8)
            if x.shape[1:] != images.shape[1:]:
                raise DataError(f"{found[n]}: images of shape {x.shape[1:]}, the first file has {images.shape[1:]}")
            images[start:start + len(x)] = x
            start += len(x)
    except (OSError, ValueError, EOFError, KeyError, zlib.error) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"cannot read {path} as ImageNet-64 npz batches ({type(e).__name__}: {_line(e)})") from None
    finally:
        for f in files:
            f.close()
    return ArraySource("imagenet64", split, image=images, label=np.concatenate(labels).astype(np.int32))


# Local routes for the configs' tfds datasets, with no preparation step.
TFDS_HINT = {"cifar10": "use plain cifar10 (the official archive, fetched on first use) or "
                        "cifar10:PATH/cifar-10-python.tar.gz",
             "imagenet_resized/64x64": "read the official Imagenet64_*_npz batches with imagenet64:DIR",
             "": "use a local source: npz:PATH, idx:DIR, cifar10:PATH, imagenet64:DIR"}


class TfdsSource:
    """``tfds.data_source`` random access (no TensorFlow); tests use tfds.testing.mock_data."""

    def __init__(self, name, split, data_dir=None):
        import tensorflow_datasets as tfds

        try:
            self.ds = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except Exception as e:  # tfds raises many types for a missing dataset
            raise DataError(f"tfds dataset {name!r} split {split!r} unavailable ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200]}); prepare it first with tfds, or "
                            f"{TFDS_HINT.get(name, TFDS_HINT[''])}") from None
        self.name, self.split = name, split
        ex = self.ds[0]
        self.key = "image" if "image" in ex else next(k for k, v in ex.items() if np.ndim(v) >= 2)
        self.element_shape = _images(np.asarray(ex[self.key])[None], name).shape[1:]

    def __len__(self):
        return len(self.ds)

    def get(self, indices):
        rows = [self.ds[int(i)] for i in indices]
        out = {"image": _images(np.stack([np.asarray(r[self.key]) for r in rows]), self.name)}
        if "label" in rows[0]:
            out["label"] = np.asarray([r["label"] for r in rows], np.int32)
        return out


def open_source(spec: str, split: str = "train", size: int = 65536, seed: int = 0):
    """Open a source by spec (see ``SPECS``)."""
    kind, _, arg = spec.partition(":")
    if kind == "digits":
        return _digits(split)
    if kind == "synthetic":  # random images for smoke runs of big configs on any machine
        try:
            h, w, c = (int(v) for v in arg.split("x"))
        except ValueError:
            raise DataError(f"synthetic source needs HxWxC, e.g. synthetic:32x32x3, got {spec!r}") from None
        rng = np.random.default_rng(seed)
        return ArraySource(spec, split, image=rng.integers(0, 256, (256, h, w, c), dtype=np.uint8),
                           label=rng.integers(0, 10, 256).astype(np.int32))
    if kind == "gmm":
        x, comp = mixture_of(spec).sample_np(seed, size)
        return ArraySource(spec, split, x=x, label=comp.astype(np.int32))
    if kind == "checkerboard":
        return ArraySource(spec, split, x=toy.checkerboard(seed, size))
    if kind == "moons":
        return ArraySource(spec, split, x=toy.two_moons(seed, size))
    if kind == "npz":
        return _npz(arg, split)
    if kind == "idx":
        return _idx(arg, split)
    if kind == "cifar10":
        return _cifar10(arg, split, fetch=spec == "cifar10")
    if kind == "imagenet64":
        return _imagenet64(arg, split)
    if kind == "tfds":
        return TfdsSource(arg, split)
    raise DataError(f"unknown data source {spec!r}; valid: {SPECS}")


def mixture_of(spec: str):
    """The exact GaussianMixture behind a ``gmm:*`` spec (the analytic teacher), else None."""
    kind, _, arg = spec.partition(":")
    if kind != "gmm":
        return None
    G = toy.GaussianMixture
    if arg in ("ring", "", "grid"):
        return G.grid() if arg == "grid" else G.ring()
    head, _, seed = arg.partition(":")
    if head == "random":
        try:
            return G.random(int(seed))
        except ValueError:
            raise DataError(f"gmm:random needs an integer seed, e.g. gmm:random:3, got {spec!r}") from None
    if arg.endswith(".json"):
        if not os.path.exists(arg):
            raise DataError(f"mixture file not found: {arg}")
        try:
            return G.from_json(arg)
        except ValueError as e:
            raise DataError(str(e)) from None
    raise DataError(f"unknown mixture {spec!r}; valid: {MIXTURES}")


def _resize(img, res, how):
    h, w, c = img.shape[1:]
    if (h, w) == (res, res):
        return img
    if how == "pad":
        if h > res or w > res:
            raise DataError(f"cannot pad {h}x{w} images to {res}x{res}")
        t, l = (res - h) // 2, (res - w) // 2
        return np.pad(img, ((0, 0), (t, res - h - t), (l, res - w - l), (0, 0)))
    x = jax.image.resize(img.astype(np.float32), (img.shape[0], res, res, c), how)
    return np.asarray(np.clip(np.round(x), 0, 255), np.uint8)


class Pipeline:
    """Global batches by step; ``batch(step)`` returns sharded ``jax.Array`` s.

    Batch dict: ``x`` float32 (images in [-1, 1], NHWC; or points) and, when
    ``num_classes > 0``, ``label`` int32.
    """

    def __init__(self, cfg, batch_size: int, sharding=None, seed: int = 0):
        self.cfg, self.batch_size, self.sharding, self.seed = cfg, batch_size, sharding, seed
        self.src = open_source(cfg.source, cfg.get("split", "train"), cfg.get("size", 65536), seed)
        self.n = len(self.src)
        if self.n == 0:
            raise DataError(f"data source {cfg.source!r} is empty")
        native = tuple(self.src.element_shape)
        self.shape = tuple(cfg.get("shape") or native)
        self.is_image = len(native) == 3
        if self.is_image:
            (h, w, c), res = native, self.shape[0]
            if len(self.shape) != 3 or self.shape[0] != self.shape[1]:
                raise DataError(f"data.shape {self.shape} is not a square image shape (H, W, C); "
                                f"{cfg.source} holds {h}x{w}x{c} images")
            if self.shape[2] != c:
                raise DataError(f"{cfg.source}: images have {c} channels, the model expects {self.shape[2]}")
            if (h, w) != (res, res) and cfg.get("resize", "none") == "none":
                raise DataError(f"{cfg.source}: image shape {h}x{w}x{c} does not match the model's "
                                f"{res}x{res}x{c}; set --config.data.resize=pad|bilinear or data.shape")
        elif self.shape != native:
            raise DataError(f"{cfg.source}: points have shape {native}, the model expects {self.shape}")
        self.num_classes = cfg.get("num_classes", 0)
        if self.num_classes and "label" not in self.src.get(np.arange(1)):
            raise DataError(f"{cfg.source}: num_classes={self.num_classes} but the source has no labels")

    def spec(self):
        """Shapes and dtypes of one global batch."""
        s = {"x": jax.ShapeDtypeStruct((self.batch_size,) + self.shape, np.float32)}
        if self.num_classes:
            s["label"] = jax.ShapeDtypeStruct((self.batch_size,), np.int32)
        return s

    def indices(self, step: int) -> np.ndarray:
        """Dataset indices of global batch ``step``: positions [sB, (s+1)B) of the stream."""
        pos = np.arange(step * self.batch_size, (step + 1) * self.batch_size, dtype=np.int64)
        epochs, offs = np.divmod(pos, self.n)
        out = np.empty_like(pos)
        for e in np.unique(epochs):
            out[epochs == e] = self._perm(int(e))[offs[epochs == e]]
        return out

    def _perm(self, epoch: int) -> np.ndarray:
        """The seeded permutation of ``epoch`` (the two most recently computed are cached; a
        later stage restarts at step 0, so an older epoch can follow a newer one)."""
        cache = self.__dict__.setdefault("_perms", {})
        if epoch not in cache:
            cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            while len(cache) > 2:  # evict in insertion order: never the one just added
                del cache[next(iter(cache))]
        return cache[epoch]

    def host_batch(self, step: int, rows: np.ndarray) -> dict:
        """Rows ``rows`` (positions in the global batch) of batch ``step``, preprocessed."""
        raw = self.src.get(self.indices(step)[rows])
        if self.is_image:
            img = _resize(raw["image"], self.shape[0], self.cfg.get("resize", "none"))
            if self.cfg.get("flip", False):
                flip = np.random.default_rng([self.seed, step, 1]).random(self.batch_size)[rows] < 0.5
                img = np.where(flip[:, None, None, None], img[:, :, ::-1], img)
            x = img.astype(np.float32) / 127.5 - 1.0
        else:
            x = raw["x"].astype(np.float32)
        out = {"x": x}
        if self.num_classes:
            out["label"] = raw["label"].astype(np.int32)
        return out

    def batch(self, step: int) -> dict:
        if self.sharding is None:
            return self.host_batch(step, np.arange(self.batch_size))
        spec, rows, pick = self._layout()
        local = self.host_batch(step, rows)  # the rows this process's devices hold, loaded once

        def make(k):
            return jax.make_array_from_callback(spec[k].shape, self.sharding,
                                                lambda index: local[k][pick[index[0].indices(self.batch_size)]])

        return {k: make(k) for k in spec}

    def _layout(self):
        """(spec, rows this process loads, device slice -> positions in them): fixed for the run,
        so computed once (the loop calls ``batch`` every step, on the prefetch thread)."""
        if getattr(self, "_lay", None) is None:
            spec = self.spec()
            idx_map = self.sharding.addressable_devices_indices_map(spec["x"].shape)
            rows = np.unique(np.concatenate([np.arange(self.batch_size)[i[0]] for i in idx_map.values()]))
            where = np.full(self.batch_size, -1)
            where[rows] = np.arange(len(rows))
            pick = {i[0].indices(self.batch_size): where[np.arange(self.batch_size)[i[0]]] for i in idx_map.values()}
            self._lay = spec, rows, pick
        return self._lay


class Prefetch:
    """Builds the next batches on a background thread so the device never waits on numpy."""

    def __init__(self, fn: Callable[[int], dict], start: int, stop: int, depth: int = 2, threaded: bool = True):
        self.fn, self.threaded = fn, threaded
        if not threaded:
            return
        self.q: queue.Queue = queue.Queue(depth)
        self.stop_flag = False

        def run():
            for s in range(start, stop):
                if self.stop_flag:
                    return
                try:
                    item = (s, fn(s), None)
                except Exception as e:  # surface errors in the consumer
                    item = (s, None, e)
                self.q.put(item)
                if item[2] is not None:
                    return

        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def get(self, step):
        if not self.threaded:
            return self.fn(step)
        s, b, err = self.q.get()
        if err is not None:
            raise err
        assert s == step, (s, step)
        return b

    def close(self):
        if not self.threaded:
            return
        self.stop_flag = True
        while self.t.is_alive():
            try:
                self.q.get(timeout=0.05)
            except queue.Empty:
                pass
