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

from genmod.train import load_workdir  # noqa: F401  (the library's loader; kept importable here)


def parse_seeds(s: str) -> np.ndarray:
    """'0-63' or '1,5,9' or '0-9,20-29'."""
    out = []
    for part in s.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return np.asarray(out, np.int64)


class Sampler:
    """Loads a workdir's final stage (or the checkpoint at ``step``) once; samples by seeds.
    ``steps``: every checkpoint step of that stage."""

    def __init__(self, workdir: str, step: int | None = None, nfe: int | None = None):
        import jax

        self.config, run, state, self.step = load_workdir(workdir, step)
        self.run = run
        self.steps = sorted(int(d) for d in os.listdir(run.ckpt.dir) if d.isdigit())  # the stage's checkpoints
        self.params = run.method.sample_params(state)
        self.fn = jax.jit(lambda p, k, f: run.method.sample(p, k, f, nfe=nfe))

    def __call__(self, seeds) -> np.ndarray:
        """Samples in data space (float32) for ``seeds``."""
        from genmod.train import seed_keys

        return np.asarray(self.fn(self.params, seed_keys(seeds), self.run.frozen))

    def compiled(self, seeds):
        """``() -> samples`` for ``seeds``, compiled ahead of time: each call is one sampling
        and nothing else, so it can be timed without a warm-up sampling."""
        from genmod.train import seed_keys

        args = (self.params, seed_keys(seeds), self.run.frozen)
        exe = self.fn.lower(*args).compile()
        return lambda: np.asarray(exe(*args))


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
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--out", required=True, help="FILE.npz (a PNG grid is written beside it)")
    p.add_argument("--seeds", help="e.g. 0-63 (default 0..num-1)")
    p.add_argument("--step", type=int)
    p.add_argument("--nfe", type=int)
    p.add_argument("--batch", type=int, default=256)
    a = p.parse_args(argv)
    try:
        seeds = parse_seeds(a.seeds) if a.seeds else np.arange(a.num)
    except ValueError:
        print(f"error: bad --seeds {a.seeds!r} (use A-B or a comma list)", file=sys.stderr)
        return 2
    if a.seeds and a.num != 64 and len(seeds) != a.num:
        print(f"error: --seeds gives {len(seeds)} seeds but --num is {a.num}", file=sys.stderr)
        return 2
    if not a.out.endswith(".npz"):
        print("error: --out must end in .npz", file=sys.stderr)
        return 2
    from genmod import writers

    try:
        s = Sampler(a.workdir, a.step, a.nfe)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    chunks = [s(np.concatenate([c, np.full(a.batch - len(c), c[-1])]))[: len(c)]
              for c in (seeds[i:i + a.batch] for i in range(0, len(seeds), a.batch))]
    x = np.concatenate(chunks)
    out = writers.to_uint8(x) if x.ndim == 4 else x.astype(np.float32)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    np.savez(a.out, samples=out, seeds=seeds, step=s.step)
    writers.save_png(a.out[:-4] + ".png", writers.preview(x[:256]))
    print(f"wrote {len(out)} samples (step {s.step}) to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
