"""Sample from a workdir's EMA weights:
``python -m genmod.sample --workdir DIR --num N --out FILE.npz [--seeds A-B] [--step S] [--nfe K]``

Writes uint8 NHWC images (or float32 points for 2-D data) under key ``samples`` with their
``seeds``, and a PNG grid beside the npz. Sample i depends only on its seed.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from genmod.train import MAX_SEEDS, Sampler, parse_seeds
from genmod.train import load_workdir  # noqa: F401  (library; kept importable here)


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable; else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return 1 << 62


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m genmod.sample", description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--num", type=int, help="number of samples (default 64, or the number of --seeds)")
    p.add_argument("--out", required=True, help="FILE.npz (a PNG grid is written beside it)")
    p.add_argument("--seeds", help="e.g. 0-63 (default 0..num-1)")
    p.add_argument("--step", type=int)
    p.add_argument("--nfe", type=int)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--allow_module", action="append", default=[], metavar="MODULE",
                   help="let the workdir's config.json import this module (outside genmod)")
    a = p.parse_args(argv)
    try:
        return _main(a)
    except _Usage as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


class _Usage(Exception):
    """A bad argument or workdir: one line, exit 2."""


def _main(a) -> int:
    """Every argument and the workdir's config are checked before the checkpoint is loaded or a
    sampler compiled; the output is written to a temporary file and renamed into place."""
    from genmod import config_lib

    if a.batch < 1:
        raise _Usage(f"--batch must be >= 1, got {a.batch}")
    if a.num is not None and a.num < 1:
        raise _Usage(f"--num must be >= 1, got {a.num}")
    if a.step is not None and a.step < 0:
        raise _Usage(f"--step must be >= 0, got {a.step}")
    if a.seeds:
        try:
            seeds = parse_seeds(a.seeds)
        except ValueError as e:
            raise _Usage(str(e)) from None
        if a.num is not None and len(seeds) != a.num:
            raise _Usage(f"--seeds gives {len(seeds)} seeds but --num is {a.num}")
    else:
        num = 64 if a.num is None else a.num
        if num > MAX_SEEDS:
            raise _Usage(f"--num {num} is more than {MAX_SEEDS} samples; sample in parts with --seeds A-B")
        seeds = None
    if not a.out.endswith(".npz"):
        raise _Usage("--out must end in .npz")
    try:
        cfg = config_lib.read_sampling_config(a.workdir, a.nfe, a.allow_module)
    except config_lib.ConfigError as e:
        raise _Usage(str(e)) from None
    n = len(seeds) if seeds is not None else num
    try:
        shape = tuple(int(v) for v in cfg["data"]["shape"])
    except (KeyError, TypeError, ValueError):
        raise _Usage(f"{a.workdir}/config.json has no usable data.shape") from None
    is_image = len(shape) == 3
    need = n * int(np.prod(shape)) * (1 if is_image else 4) + n * 8
    if need > available_memory() // 2:
        raise _Usage(f"--num {n} needs {need / 2**30:.1f} GiB for the samples, more than half the free "
                     f"memory; sample in parts with --seeds A-B")
    # the output must be writable before any sampling: probe the very file we will rename
    tmp = a.out[:-4] + ".tmp.npz"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(tmp, "wb"):
            pass
        os.remove(tmp)
    except OSError as e:
        raise _Usage(f"cannot write --out {a.out} ({e.strerror or e})") from None
    if seeds is None:
        seeds = np.arange(n, dtype=np.int64)

    from genmod import writers
    from genmod.checkpoint import CheckpointError

    try:
        s = Sampler(a.workdir, a.step, a.nfe)
    except (FileNotFoundError, config_lib.ConfigError, CheckpointError) as e:
        raise _Usage(str(e)) from None
    used, what = s.nfe_used()
    asked = "" if a.nfe is None else f" (--nfe {a.nfe})" if a.nfe == used else f" (--nfe {a.nfe} asked)"
    print(f"sampling {n} from {a.workdir} (step {s.step}): NFE {used}{asked}, {what}", flush=True)
    out, preview = None, []
    for i in range(0, n, a.batch):
        c = seeds[i:i + a.batch]
        x = s(np.concatenate([c, np.full(a.batch - len(c), c[-1])]))[: len(c)]
        if not np.isfinite(x).all():
            raise _Usage(f"the sampler gave non-finite values (seeds {c[0]}..{c[-1]}, checkpoint step {s.step}); "
                         f"nothing written: try another --step or --nfe")
        if out is None:
            try:
                out = np.empty((n,) + x.shape[1:], np.uint8 if x.ndim == 4 else np.float32)
            except MemoryError:
                raise _Usage(f"--num {n}: not enough memory for the samples; sample in parts with --seeds A-B") from None
        out[i:i + len(c)] = writers.to_uint8(x) if x.ndim == 4 else x
        if sum(map(len, preview)) < 256:
            preview.append(x[:256])
    np.savez(tmp, samples=out, seeds=seeds, step=s.step, nfe=used)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}: {len(out)} samples (step {s.step}, NFE {used})")
    png = a.out[:-4] + ".png"
    writers.save_png(png, writers.preview(np.concatenate(preview)[:256]))
    print(f"wrote {png}: {'grid of the first' if out.ndim == 4 else 'density of the first'} "
          f"{min(len(out), 256)} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
