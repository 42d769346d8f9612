"""Convert pytorch-fid's Inception weights to the project's npz:

    python -m genmod.eval.convert pt_inception-2015-12-05-6726825d.pth \\
        --out checkpoints/fid/inception_fid.npz

The .pth comes from https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/
pt_inception-2015-12-05-6726825d.pth (TF's 2015-12-05 Inception, ported; its sha256 starts
with 6726825d). It is read with ``torch.load(..., map_location='cpu', weights_only=True)``
(torch is needed for this step only; nothing else is unpickled). The npz holds float32 arrays
named ``params/<module path>/kernel|scale|bias`` and ``batch_stats/<module path>/mean|var``
(conv kernels transposed OIHW -> HWIO), the 1008-way classifier as ``extra/fc/*`` (unused by
FID), and provenance under ``meta/``: the .pth's sha256 and the content hash of the variables.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys

import numpy as np

STANDARD_SHA256_PREFIX = "6726825d"  # torch-hub convention: the file name carries it


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_state_dict(state_dict) -> dict[str, np.ndarray]:
    """torch state dict (tensors or arrays) -> flat {name: float32 array} in linen layout."""
    from genmod.eval.inception import abstract_variables, flatten

    sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
          for k, v in state_dict.items()}
    out: dict[str, np.ndarray] = {}
    used = set()
    for name, a in sd.items():
        if name.endswith("num_batches_tracked"):
            used.add(name)
            continue
        mod, _, leaf = name.rpartition(".")
        path = mod.replace(".", "/")
        if mod == "fc":
            key = {"weight": "extra/fc/kernel", "bias": "extra/fc/bias"}[leaf]
            out[key] = a.T if leaf == "weight" else a
        elif mod.endswith(".conv") and leaf == "weight":
            out[f"params/{path}/kernel"] = a.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif mod.endswith(".bn"):
            key = {"weight": f"params/{path}/scale", "bias": f"params/{path}/bias",
                   "running_mean": f"batch_stats/{path}/mean",
                   "running_var": f"batch_stats/{path}/var"}.get(leaf)
            if key is None:
                raise ValueError(f"unexpected state-dict entry {name}")
            out[key] = a
        elif mod.startswith("AuxLogits"):
            continue  # aux classifier (not in pytorch-fid's checkpoint; ignore if present)
        else:
            raise ValueError(f"unexpected state-dict entry {name}")
        used.add(name)
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
    expected = flatten(abstract_variables())
    have = {k for k in out if not k.startswith("extra/")}
    if have != set(expected):
        missing, extra = sorted(set(expected) - have), sorted(have - set(expected))
        raise ValueError(f"state dict does not match pytorch-fid's Inception: missing {missing[:3]}"
                         f"{'...' if len(missing) > 3 else ''}, unexpected {extra[:3]}")
    for k, s in expected.items():
        if tuple(out[k].shape) != tuple(s.shape):
            raise ValueError(f"{k}: shape {out[k].shape} != expected {s.shape}")
    return out


def convert(pth: str, out: str) -> dict:
    """Read ``pth`` safely, write the npz at ``out``; returns the provenance dict."""
    import torch  # optional dependency, needed only here

    from genmod.eval.inception import content_sha256

    src_sha = file_sha256(pth)
    sd = torch.load(pth, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise ValueError(f"{pth}: expected a state dict, got {type(sd).__name__}")
    flat = convert_state_dict(sd)
    sha = content_sha256({k: v for k, v in flat.items() if not k.startswith("extra/")})
    meta = {"meta/source_sha256": np.asarray(src_sha), "meta/source_name": np.asarray(os.path.basename(pth)),
            "meta/standard": np.asarray(src_sha.startswith(STANDARD_SHA256_PREFIX)),
            "meta/sha256": np.asarray(sha)}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.tmp{os.getpid()}.npz"  # per process: two converting at once each rename a whole file
    np.savez(tmp, **flat, **meta)
    os.replace(tmp, out)
    return {"out": out, "sha256": sha, "source_sha256": src_sha,
            "standard": src_sha.startswith(STANDARD_SHA256_PREFIX)}


def fetched_weights(log=None) -> str:
    """pytorch-fid's .pth fetched into the cache (genmod.assets ``inception_fid``, hash-checked)
    and converted beside it once: the default weights of ``genmod.evaluate``."""
    from genmod import assets
    from genmod.eval.inception import WeightsError

    try:
        pth = assets.fetch("inception_fid", log)
    except assets.AssetError as e:
        raise WeightsError(str(e)) from None
    out = os.path.join(os.path.dirname(pth), "inception_fid.npz")
    try:
        with np.load(out, allow_pickle=False) as f:
            if str(f["meta/source_sha256"]) == file_sha256(pth):
                return out
    except (OSError, ValueError, KeyError, EOFError):
        pass  # absent, or from other weights: convert
    try:
        convert(pth, out)
    except ImportError:
        raise WeightsError(f"converting the fetched {pth} needs torch (CPU is enough): pip install torch; "
                           f"or convert it elsewhere and pass --weights") from None
    except Exception as e:  # noqa: BLE001 - one clear line for any malformed input
        raise WeightsError(f"{pth}: cannot convert ({(str(e).splitlines() or [''])[0][:200]})") from None
    return out


def run_converter(convert_fn, paths, out):
    """(info, None) from ``convert_fn(out)``, or (None, one error line) for a missing input, no
    torch, or a malformed file: the converters' shared command-line contract."""
    missing = [x for x in paths if not os.path.exists(x)]
    if missing:
        return None, f"error: {missing[0]} not found"
    try:
        return convert_fn(out), None
    except ImportError:
        return None, "error: converting needs torch (CPU is enough): pip install torch"
    except Exception as e:  # noqa: BLE001 - one clear line for any malformed input
        return None, f"error: {' + '.join(paths)}: {(str(e).splitlines() or [''])[0][:300]}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m genmod.eval.convert",
                                description="Convert pytorch-fid's Inception .pth to genmod's npz.")
    p.add_argument("pth", help="pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("--out", default=os.path.join("checkpoints", "fid", "inception_fid.npz"))
    args = p.parse_args(argv)
    info, err = run_converter(lambda out: convert(args.pth, out), [args.pth], args.out)
    if err:
        print(err, file=sys.stderr)
        return 2
    if not info["standard"]:
        print(f"warning: {args.pth} sha256 {info['source_sha256'][:12]} is not pytorch-fid's "
              f"standard {STANDARD_SHA256_PREFIX}...: FIDs from it are not comparable", file=sys.stderr)
    print(f"wrote {info['out']} (weights sha256 {info['sha256']}, from .pth sha256 {info['source_sha256']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
