"""Import a published network into a genmod workdir (usable as ``--config.teacher.workdir``):

    python -m genmod.convert edm PATH.pkl --workdir DIR
    python -m genmod.convert edm edm-cifar10-32x32-cond-vp --workdir DIR   # a published pickle, by name
    python -m genmod.convert edm STATE_DICT.pt --workdir DIR --arch ddpmpp|ncsnpp|adm [--precond edm|vp|ve]

``edm``: an NVlabs/edm pickle (``edm-*.pkl``, ``network-snapshot-*.pkl``), read without running
any of the code it embeds (genmod.edm_pickle), or with ``--arch`` a plain PyTorch state dict
(``torch.load(weights_only=True)``). A name from NVlabs/edm's README (``python -m genmod.assets
list``) instead of a path is fetched into the cache first (genmod.assets). An existing
non-empty DIR is never overwritten.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _json_dict(s: str | None, flag: str) -> dict | None:
    if s is None:
        return None
    try:
        d = json.loads(s)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag}: not JSON ({e.msg})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{flag}: expected a JSON object")
    return d


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m genmod.convert", description=__doc__.splitlines()[0])
    p.add_argument("format", choices=["edm"], help="what PATH is (edm: NVlabs/edm pickle or state dict)")
    p.add_argument("path", help="a file, or a published EDM network's name (edm-cifar10-32x32-cond-vp, ...)")
    p.add_argument("--workdir", required=True, help="new (or empty) directory to write")
    p.add_argument("--arch", help="PATH is a plain state dict of this EDM --arch: ddpmpp, ncsnpp or adm")
    p.add_argument("--precond", default="edm", help="with --arch: edm (default), vp or ve")
    p.add_argument("--arch_kwargs", help="with --arch: JSON overriding backbone kwargs, e.g. "
                                         "'{\"model_channels\": 64}'")
    p.add_argument("--precond_kwargs", help="with --arch: JSON overriding preconditioner kwargs")
    a = p.parse_args(argv)

    from genmod import assets
    from genmod.edm_pickle import EdmPickleError, convert

    try:
        if a.arch is None and (a.arch_kwargs or a.precond_kwargs or a.precond != "edm"):
            raise ValueError("--precond, --arch_kwargs and --precond_kwargs need --arch (a pickle records them)")
        name = a.path.removesuffix(".pkl")
        if not os.path.exists(a.path) and name in assets.EDM_NETS:
            wd = os.path.abspath(a.workdir)
            if os.path.exists(wd) and (not os.path.isdir(wd) or os.listdir(wd)):  # before a download
                raise ValueError(f"workdir {wd} exists and is not empty; not overwriting it")
            a.path = assets.fetch(name)  # hash-checked; read below by the restricted unpickler only
        rec = convert(a.path, a.workdir, a.arch, a.precond, _json_dict(a.arch_kwargs, "--arch_kwargs"),
                      _json_dict(a.precond_kwargs, "--precond_kwargs"))
    except (EdmPickleError, ValueError, OSError, assets.AssetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.workdir}: {rec['precond']} + {rec['model']}, {rec['parameters']:,} parameters "
          f"(use --config.teacher.workdir={a.workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
