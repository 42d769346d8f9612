"""Does XLA:CPU use every core for a convolution? One 3x3 conv (DDPM++'s 64->64 at 32x32, batch 32):
forward and weight gradient, XLA with its YNNPACK convolutions (XLA's default) and with Eigen's
(genmod's default on more than one core, ``genmod.xla_cpu_flags``), on all cores and pinned to
one, next to torch's.

    python benchmarks/conv_threads.py [--batch 32 --res 32 --ch 64]

Each case runs in its own subprocess (XLA reads XLA_FLAGS once, when its CPU client starts).
docs/benchmarks.md "Performance" (2026-12-06) has the figures and what they explain.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import genmod

CASES = [("XLA, YNNPACK convs (XLA's default)", "jax", f"{genmod.YNN_FLAG}={genmod.YNN_XLA_DEFAULT}"),
         ("XLA, Eigen convs (genmod's default)", "jax", f"{genmod.YNN_FLAG}={genmod.YNN_WITHOUT_CONV}"),
         ("torch", "torch", "")]


def _ms(fn, n=10):
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * sorted(ts)[n // 2]


def child(a):
    if a.one_core:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if a.lib == "torch":
        import torch

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        x, w = torch.randn(a.batch, a.ch, a.res, a.res), torch.randn(a.ch, a.ch, 3, 3, requires_grad=True)
        g = torch.randn(a.batch, a.ch, a.res, a.res)
        conv = lambda: torch.nn.functional.conv2d(x, w, padding=1)
        fwd = lambda: conv().detach()
        dw = lambda: torch.autograd.grad(conv(), w, g)[0]
    else:
        import jax

        key = jax.random.split(jax.random.PRNGKey(0), 3)
        x = jax.random.normal(key[0], (a.batch, a.res, a.res, a.ch))
        w = jax.random.normal(key[1], (3, 3, a.ch, a.ch))
        g = jax.random.normal(key[2], (a.batch, a.res, a.res, a.ch))
        conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        f = jax.jit(conv)
        d = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
        fwd = lambda: f(x, w).block_until_ready()
        dw = lambda: d(x, w, g).block_until_ready()
    print(json.dumps({"fwd": _ms(fwd), "dw": _ms(dw)}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--ch", type=int, default=64)
    p.add_argument("--lib", default=None, help=argparse.SUPPRESS)
    p.add_argument("--one-core", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.lib:
        return child(a)
    shape = ["--batch", str(a.batch), "--res", str(a.res), "--ch", str(a.ch)]
    print(f"3x3 conv {a.ch}->{a.ch} at {a.res}x{a.res}, batch {a.batch}; {len(os.sched_getaffinity(0))} CPUs; ms, median of 10")
    print("| case | all cores: forward | weight grad | one core: forward | weight grad |\n|---|---|---|---|---|")
    for name, lib, flags in CASES:
        row = []
        for one in (False, True):
            env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
            out = subprocess.run([sys.executable, os.path.abspath(__file__), *shape, "--lib", lib]
                                 + (["--one-core"] if one else []), env=env, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            row += [f"{r['fwd']:.1f}", f"{r['dw']:.1f}"]
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
