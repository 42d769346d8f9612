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

from genmod.train import Sampler, load_workdir  # noqa: F401  (library; kept importable here)


MAX_SEED = 2**32 - 1  # seeds become uint32 PRNG keys
MAX_SEEDS = 2**31


def parse_seeds(s: str) -> np.ndarray:
    """'0-63' or '1,5,9' or '0-9,20-29'; ValueError (with the reason) for a malformed part, a
    descending range, a seed outside 0..2**32-1 or more than 2**31 seeds."""
    parts, count = [], 0
    for part in s.split(","):
        a, dash, b = part.strip().partition("-")
        try:
            lo, hi = int(a), int(b) if dash else int(a)
        except ValueError:
            raise ValueError(f"bad --seeds {s!r}: {part!r} is not N or A-B (seeds are >= 0)") from None
        if hi < lo:
            raise ValueError(f"bad --seeds {s!r}: the range {part!r} is descending")
        if lo < 0 or hi > MAX_SEED:
            raise ValueError(f"bad --seeds {s!r}: seeds are 0..{MAX_SEED}")
        count += hi - lo + 1
        if count > MAX_SEEDS:
            raise ValueError(f"bad --seeds {s!r}: more than {MAX_SEEDS} seeds")
        parts.append((lo, hi))
    return np.concatenate([np.arange(lo, hi + 1, dtype=np.int64) for lo, hi in parts])


def nfe_problem(nfe, method) -> str | None:
    """Why ``--nfe`` is not usable for ``method`` (None: fine or not given). 0 means "no
    steps" only where a method defines it (cdrl: no Langevin steps); elsewhere it would
    silently become the default."""
    from genmod.config_lib import NFE0_METHODS

    if nfe is None:
        return None
    if nfe < 0 or (nfe == 0 and method not in NFE0_METHODS):
        return f"--nfe must be >= 1{' (0: no Langevin steps)' if method in NFE0_METHODS else ''}, got {nfe}"
    return None


def nfe_used(config, nfe=None) -> tuple[int, str]:
    """(network evaluations per sample that ``method.sample(..., nfe=nfe)`` spends, what they
    count) for the packaged methods; ``nfe`` None means ``config.sample.nfe``. Heun solvers
    spend 2N - 1 calls on N steps, so an even request runs one call less (``--nfe 10`` -> 9).
    For a method this function does not know, the request is returned as is."""
    get = lambda d, k, default=None: (d.get(k, default) if hasattr(d, "get") else default)  # noqa: E731
    method = get(config, "method")
    n = nfe or get(get(config, "sample", {}), "nfe", 0)
    solver = {"edm": get(get(config, "edm", {}), "solver", "heun"), "fm": get(get(config, "fm", {}), "solver", "euler"),
              "crossflow": get(get(config, "crossflow", {}), "solver", "crossflow")}.get(method)
    if solver == "heun":
        return 2 * ((n + 1) // 2) - 1, "network evaluations (Heun: 2 per step, the last step Euler)"
    if method in ("edm", "fm", "crossflow"):
        return n, "network evaluations (Euler)"
    if method in ("cm", "dmd2", "fdistill", "disback"):
        return n, "generator steps"
    if method == "cdrl":
        return (nfe if nfe is not None else n), "Langevin steps per noise level"
    return n, f"(as requested; method {method!r} does not report its evaluations)"


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


class SampleStream:
    """Iterable of (seeds_chunk, uint8 NHWC images) in seed order, ``batch_size`` at a time
    (the last chunk is padded to the compiled shape and cut back). The checkpoint is loaded
    when iteration starts; ``.step`` then says which one."""

    def __init__(self, workdir, seeds, batch_size, step=None, nfe=None):
        self.workdir, self.seeds, self.batch_size, self.step, self.nfe = workdir, np.asarray(seeds), batch_size, step, nfe

    def __iter__(self):
        from genmod.writers import to_uint8

        s = Sampler(self.workdir, self.step, self.nfe)
        self.step = s.step
        for i in range(0, len(self.seeds), self.batch_size):
            chunk = self.seeds[i:i + self.batch_size]
            padded = np.concatenate([chunk, np.full(self.batch_size - len(chunk), chunk[-1])])
            yield chunk, to_uint8(s(padded)[: len(chunk)])


iter_samples = SampleStream


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
    if not os.path.exists(os.path.join(a.workdir, "config.json")):
        raise _Usage(f"no config.json in {a.workdir}: not a genmod workdir")
    config_lib.trust_modules(*a.allow_module)
    try:
        cfg = config_lib.read_workdir_config(a.workdir)
        config_lib.check_modules(cfg, os.path.join(a.workdir, "config.json"))
    except config_lib.ConfigError as e:
        raise _Usage(str(e)) from None
    problem = nfe_problem(a.nfe, cfg.get("method"))
    if problem:
        raise _Usage(problem)
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

    used, what = nfe_used(cfg, a.nfe)
    asked = "" if a.nfe is None else f" (--nfe {a.nfe})" if a.nfe == used else f" (--nfe {a.nfe} asked)"
    try:
        s = Sampler(a.workdir, a.step, a.nfe)
    except (FileNotFoundError, config_lib.ConfigError, CheckpointError) as e:
        raise _Usage(str(e)) from None
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
