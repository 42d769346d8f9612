"""FID evaluation (pytorch-fid's Inception and maths, in JAX), and the offline FD of the
README's digits / MNIST numbers:

    python -m genmod.evaluate ref --data SOURCE --out FILE.npz [--split train] [--num N]
    python -m genmod.evaluate fid --workdir DIR --ref FILE.npz [--num 50000] [--seeds A-B]
                                  [--batch 250] [--step S] [--nfe K]
    python -m genmod.evaluate fd --workdir DIR [--features digits|mnist|PATH.npz] [--step S] [--nfe K]

``ref`` writes reference statistics (mu, sigma in float64, count) of a data source with their
provenance (data spec, split, count, resolution, Inception weights sha256). ``fid`` streams
samples from a checkpoint's EMA weights through the Inception network (never holding them all),
refuses a reference made at another resolution or with other weights, and writes
``DIR/eval/fid50k_step<S>.json`` (never overwriting a different earlier result). Both take
``--weights PATH``; without it, ``$GENMOD_FID_WEIGHTS`` or ``checkpoints/fid/inception_fid.npz``
if present, else pytorch-fid's weights fetched into the cache on first use (hash-checked,
genmod.assets ``inception_fid``) and converted there once (needs torch; see docs/fid.md).

``fd`` needs no download: Frechet distance and precision/recall in the features of a seeded
classifier trained on the spot (``genmod.eval.proxy``), with the protocol of
benchmarks/results.py and docs/RESULTS.md (digits: 898 samples vs 899 digits; MNIST: 1,000
samples vs 1,000 test images), so it reproduces their numbers; it also scores the real-data
floor and writes ``DIR/eval/fd_<features>_step<S>_nfe<K>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Iterable

import numpy as np

REF_FORMAT = "genmod-fid-ref-v1"
PROTOCOL = "pytorch-fid InceptionV3 pool3 (2048), bilinear 299 align_corners=False, x/127.5-1"


def _die(msg: str):
    raise SystemExit(f"error: {msg}")


def metric_name(n: int) -> str:
    """fid50k, fid10k, fid2k ... by sample count (fid{n} when not a multiple of 1000)."""
    return f"fid{n // 1000}k" if n % 1000 == 0 else f"fid{n}"


# ---------------------------------------------------------------------------------------------
# Library API


def _extractor(params=None, weights=None, batch_size=250, mesh=None):
    from genmod.eval.inception import InceptionFeatures

    if isinstance(params, InceptionFeatures):
        return params
    return InceptionFeatures(params, weights=weights, batch_size=batch_size, mesh=mesh)


def feature_stats(images_iter: Iterable[np.ndarray], extractor, log=None):
    """Streaming float64 statistics of the Inception features of uint8 NHWC batches."""
    from genmod.eval.fid import FeatureStats

    stats, t0, shape = FeatureStats(), time.time(), None
    for images in images_iter:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if shape is None:
            shape = images.shape[1:]
        elif images.shape[1:] != shape:
            raise ValueError(f"image shape changed mid-stream: {shape} -> {images.shape[1:]}")
        stats.update(extractor(images))
        if log is not None:
            log(stats.count, time.time() - t0)
    return stats, shape


def compute_fid(images_iter: Iterable[np.ndarray], ref_stats, params=None, *, mesh=None,
                batch_size: int = 250) -> float:
    """FID of uint8 NHWC batches against reference statistics: for training-loop hooks.

    ``ref_stats``: a reference npz path, a dict/npz with 'mu' and 'sigma', a (mu, sigma) pair or
    a FeatureStats. ``params``: an ``InceptionFeatures`` (reuse one across calls: it holds the
    compiled network), Inception variables, or None to load the default weights. In a
    multi-process run each process passes its own images; statistics are summed over
    processes before the distance."""
    from genmod.eval import fid as fidlib

    if isinstance(ref_stats, str):
        ref_stats = load_ref(ref_stats)
    if isinstance(ref_stats, fidlib.FeatureStats):
        ref = ref_stats.mu_sigma()
    elif hasattr(ref_stats, "keys") or hasattr(ref_stats, "files"):
        ref = (np.asarray(ref_stats["mu"]), np.asarray(ref_stats["sigma"]))
    else:
        ref = tuple(ref_stats)
    stats, _ = feature_stats(images_iter, _extractor(params, batch_size=batch_size, mesh=mesh))
    return fidlib.fid_from_stats(stats.allreduce(), ref)


def load_ref(path: str) -> dict:
    """Reference statistics npz -> dict (mu, sigma, count and provenance strings)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"reference statistics not found: {path} (make them with "
                                f"'python -m genmod.evaluate ref --data SOURCE --out {path}')")
    from genmod.eval.fid import read_npz

    d = read_npz(path, "reference")
    if "mu" not in d or "sigma" not in d:
        raise ValueError(f"{path}: not FID statistics (needs mu and sigma; keys: {', '.join(d)})")
    out = {k: (v.item() if v.ndim == 0 else v) for k, v in d.items()}
    try:
        out["mu"], out["sigma"] = d["mu"].astype(np.float64), d["sigma"].astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: mu/sigma are not numeric arrays ({e})") from None
    mu, sigma = out["mu"], out["sigma"]
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} are not a mean and its covariance")
    for k in ("mu", "sigma"):
        bad = int((~np.isfinite(out[k])).sum())
        if bad:
            raise ValueError(f"{path}: {k} holds {bad} non-finite values (NaN/inf): recompute the reference")
    return out


def _ref_problem(ref: dict, weights_sha: str, resolution=None) -> str | None:
    """Why ``ref`` cannot be compared with features from these weights at this resolution."""
    if ref.get("format") != REF_FORMAT:
        return ("reference has no genmod provenance (format/weights hash/resolution); "
                "make one with 'python -m genmod.evaluate ref'")
    if ref["weights_sha256"] != weights_sha:
        return (f"reference was made with Inception weights {ref['weights_sha256'][:12]}, these are "
                f"{weights_sha[:12]}: recompute the reference with the same weights")
    if resolution is not None and tuple(int(v) for v in ref["resolution"]) != tuple(resolution):
        return (f"reference resolution {'x'.join(map(str, ref['resolution']))} != samples "
                f"{'x'.join(map(str, resolution))}")
    return None


def _write_json_unique(path: str, result: dict, volatile=("time", "elapsed_s", "img_per_s")) -> str:
    """Write ``result`` at ``path``; an existing identical result is kept, a different one is
    never overwritten (``_1``, ``_2`` ... suffixes)."""
    strip = lambda d: {k: v for k, v in d.items() if k not in volatile}  # noqa: E731
    base, ext = os.path.splitext(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    i = 0
    while True:
        p = path if i == 0 else f"{base}_{i}{ext}"
        if not os.path.exists(p):
            with open(p + ".tmp", "w") as f:
                json.dump(result, f, indent=2, sort_keys=True)
                f.write("\n")
            os.replace(p + ".tmp", p)
            return p
        try:
            with open(p) as f:
                if strip(json.load(f)) == strip(json.loads(json.dumps(result))):
                    return p
        except (OSError, ValueError):
            pass
        i += 1


# ---------------------------------------------------------------------------------------------
# CLI


def _progress(total, every_s=30.0):
    state = {"last": 0.0}

    def log(n, dt):
        if dt - state["last"] >= every_s or n >= total:
            state["last"] = dt
            print(f"  {n}/{total} images, {n / max(dt, 1e-9):.1f} img/s", file=sys.stderr, flush=True)
    return log


def cmd_ref(a) -> int:
    from genmod import data
    from genmod.eval.inception import RESOLUTION

    extractor = _load_extractor(a)  # fail fast on missing weights, before opening the data
    try:
        src = data.open_source(a.data, a.split)
    except (data.DataError, FileNotFoundError, ValueError) as e:
        _die(str(e))
    n = len(src) if a.num is None else a.num
    if n < 2:
        _die(f"need at least 2 images for statistics, got --num {n}")
    if n > len(src):
        _die(f"--num {n} exceeds the {len(src)} images in {a.data} ({a.split})")
    first = src.get(np.arange(1))
    if "image" not in first:
        _die(f"{a.data} is not an image source (keys: {', '.join(first)})")

    def batches():
        for i in range(0, n, a.batch):
            yield src.get(np.arange(i, min(i + a.batch, n)))["image"]

    t0 = time.time()
    try:
        stats, shape = feature_stats(batches(), extractor, _progress(n))
    except ValueError as e:
        _die(f"{a.data}: {e}")
    if stats.count != n:
        _die(f"internal: counted {stats.count} images, expected {n}")
    mu, sigma = stats.mu_sigma()
    out = a.out if a.out.endswith(".npz") else a.out + ".npz"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    np.savez(out + ".tmp.npz", mu=mu, sigma=sigma, count=np.int64(n), format=REF_FORMAT,
             protocol=PROTOCOL, data=a.data, split=a.split,
             resolution=np.asarray(shape, np.int64), inception_input=np.int64(RESOLUTION),
             weights_sha256=extractor.sha256, time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    os.replace(out + ".tmp.npz", out)
    print(f"wrote {out}: {n} images of {a.data} ({a.split}), {'x'.join(map(str, shape))}, "
          f"weights {extractor.sha256[:12]}, {time.time() - t0:.0f}s")
    return 0


def _load_extractor(a):
    from genmod.eval.inception import WeightsError

    try:
        return _extractor(weights=a.weights, batch_size=a.batch)
    except WeightsError as e:
        _die(str(e))


def _sampling_config(a) -> dict:
    """The workdir's config, checked (modules, ``--nfe``) before anything is loaded."""
    from genmod import config_lib

    try:
        return config_lib.read_sampling_config(a.workdir, a.nfe, a.allow_module)
    except config_lib.ConfigError as e:
        _die(str(e))


def cmd_fid(a) -> int:
    from genmod import train
    from genmod.eval import fid as fidlib

    if a.num < 2:
        _die(f"FID needs at least 2 samples, got --num {a.num}")
    try:
        seeds = train.parse_seeds(a.seeds) if a.seeds else np.arange(a.num, dtype=np.int64)
    except ValueError:
        _die(f"bad --seeds {a.seeds!r} (use A-B or a comma list)")
    if a.num > len(seeds):
        _die(f"--num {a.num} exceeds the {len(seeds)} seeds in --seeds {a.seeds}")
    seeds = seeds[:a.num]
    if len(np.unique(seeds)) != len(seeds):
        _die("--seeds repeats seeds")
    try:
        ref = load_ref(a.ref)
    except (FileNotFoundError, ValueError) as e:
        _die(str(e))
    extractor = _load_extractor(a)
    problem = _ref_problem(ref, extractor.sha256)
    if problem:
        _die(f"{a.ref}: {problem}")
    _sampling_config(a)
    if a.num < 2048:
        print(f"warning: {a.num} samples < 2048: the covariance is singular and {metric_name(a.num)} "
              f"is biased upwards; compare only at equal N and seeds", file=sys.stderr)

    t0 = time.time()
    it = train.iter_samples(a.workdir, seeds, a.batch, step=a.step, nfe=a.nfe)
    got = {"n": 0}

    def checked():
        for chunk_seeds, images in it:
            images = np.asarray(images)
            if images.ndim == 3:
                images = images[..., None]
            if got["n"] == 0:
                if images.dtype != np.uint8 or images.ndim != 4:
                    _die(f"sampler gave {images.dtype} {images.shape}, not uint8 images (2-D data has no FID)")
                problem = _ref_problem(ref, extractor.sha256, images.shape[1:])
                if problem:
                    _die(f"{a.ref}: {problem}")
            if not np.array_equal(chunk_seeds, seeds[got["n"]:got["n"] + len(chunk_seeds)]):
                _die("sampler returned seeds out of order")
            got["n"] += len(chunk_seeds)
            yield images

    from genmod.checkpoint import CheckpointError

    try:
        stats, shape = feature_stats(checked(), extractor, _progress(a.num))
    except (FileNotFoundError, ValueError, CheckpointError) as e:  # no checkpoint at --step, bad workdir, ...
        _die(str(e))
    if stats.count != a.num:
        _die(f"got {stats.count} samples, expected {a.num}")
    value = fidlib.fid_from_stats(stats, (ref["mu"], ref["sigma"]))
    step = a.step if a.step is not None else getattr(it, "step", None)
    name = metric_name(a.num)
    dt = time.time() - t0
    result = {
        "metric": name, "value": value, "num": int(a.num), "seeds": a.seeds or f"0-{a.num - 1}",
        "step": step, "nfe": a.nfe, "workdir": os.path.abspath(a.workdir),
        "ref": os.path.abspath(a.ref), "ref_data": ref.get("data"), "ref_split": ref.get("split"),
        "ref_count": int(ref.get("count", 0)), "resolution": list(map(int, shape)),
        "weights_sha256": extractor.sha256, "protocol": PROTOCOL,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "elapsed_s": round(dt, 1),
    }
    path = _write_json_unique(os.path.join(a.workdir, "eval", f"{name}_step{step if step is not None else 'latest'}.json"),
                              result)
    print(f"{name} = {value:.4f}  (step {step if step is not None else 'latest'}, {a.num} samples, "
          f"ref {os.path.basename(a.ref)}, {dt:.0f}s) -> {path}")
    return 0


def cmd_fd(a) -> int:
    """FD in a seeded classifier's features (genmod.eval.proxy.workdir_quality), its floor, a JSON."""
    from genmod import config_lib
    from genmod.checkpoint import CheckpointError
    from genmod.eval import proxy

    wcfg = _sampling_config(a)
    try:
        ref, _ = proxy.reference_sets(a.features)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _die(f"--features {a.features}: {e}")
    shape = tuple((wcfg.get("data") or {}).get("shape") or ())
    if shape != ref.shape[1:]:
        _die(f"--features {a.features} scores {'x'.join(map(str, ref.shape[1:]))} images, {a.workdir} makes "
             f"{'x'.join(map(str, shape)) or 'no images'}")
    t0 = time.time()
    bench = proxy.benchmark(a.features)
    try:
        q = proxy.workdir_quality(a.workdir, bench, nfe=a.nfe, step=a.step)
    except (FileNotFoundError, ValueError, CheckpointError, config_lib.ConfigError) as e:
        _die(str(e))
    fl = proxy.floor(bench)
    used = q["nfe_used"]
    result = {"metric": bench.name, "value": q["fd"], "precision": q["precision"], "recall": q["recall"],
              "floor": fl, "num": q["num"], "ref_count": len(bench.reference), "seeds": f"0-{q['num'] - 1}",
              "step": q["step"], "nfe": a.nfe, "nfe_used": used, "features": a.features,
              "classifier_accuracy": bench.features.accuracy, "workdir": os.path.abspath(a.workdir),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "elapsed_s": round(time.time() - t0, 1)}
    slug = bench.name.lower()
    path = _write_json_unique(os.path.join(a.workdir, "eval", f"{slug}_step{q['step']}_nfe{used}.json"), result)
    print(f"{bench.name} = {q['fd']:.4f}  precision {q['precision']:.3f} recall {q['recall']:.3f}  (step {q['step']}, "
          f"NFE {used}, {q['num']} samples vs {len(bench.reference)} real; real vs real {fl['fd']:.4f}) -> {path}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m genmod.evaluate", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("ref", help="reference statistics of a data source")
    r.add_argument("--data", required=True, help="data spec, e.g. cifar10 (fetched), cifar10:PATH, npz:PATH, idx:DIR")
    r.add_argument("--out", required=True, help="FILE.npz")
    r.add_argument("--split", default="train")
    r.add_argument("--num", type=int, help="first N images (default: all)")
    f = sub.add_parser("fid", help="FID of a checkpoint's EMA samples against reference statistics")
    f.add_argument("--workdir", required=True)
    f.add_argument("--ref", required=True, help="reference statistics npz from 'ref'")
    f.add_argument("--num", type=int, default=50000)
    f.add_argument("--seeds", help="e.g. 0-49999 (default 0..num-1); the first --num are used")
    f.add_argument("--step", type=int)
    f.add_argument("--nfe", type=int)
    f.add_argument("--allow_module", action="append", default=[], metavar="MODULE",
                   help="let the workdir's config.json import this module (outside genmod)")
    d = sub.add_parser("fd", help="FD_digits / FD_mnist of a checkpoint's EMA samples (offline, no Inception)")
    d.add_argument("--workdir", required=True)
    d.add_argument("--features", default="digits",
                   help="digits (FD_digits), mnist (FD_mnist, ../shared/data/mnist.npz) or an MNIST-like "
                        "PATH.npz (x_train, y_train, x_test, y_test)")
    d.add_argument("--step", type=int)
    d.add_argument("--nfe", type=int)
    d.add_argument("--allow_module", action="append", default=[], metavar="MODULE",
                   help="let the workdir's config.json import this module (outside genmod)")
    for q in (r, f):
        q.add_argument("--batch", type=int, default=250)
        q.add_argument("--weights", help="converted Inception npz (default: $GENMOD_FID_WEIGHTS, "
                                         "checkpoints/fid/inception_fid.npz, else fetched into the cache)")
    a = p.parse_args(argv)
    if a.cmd == "fd":
        return cmd_fd(a)
    if a.batch < 1:
        _die(f"--batch must be positive, got {a.batch}")
    return cmd_ref(a) if a.cmd == "ref" else cmd_fid(a)


if __name__ == "__main__":
    sys.exit(main())
