"""Convolution gradients inside loops on XLA:CPU: ``lax.conv_general_dilated`` vs genmod's
``conv2d`` (``genmod/nets/conv.py``), per op and on a whole train step, in one process.

    python benchmarks/conv_in_loops.py                         # ops, then cdrl_digits' train step
    python benchmarks/conv_in_loops.py --config cdrl_cifar10 --batch 8 --rounds 1

Ops: the input gradient, the weight gradient and a JVP of a 3x3 convolution (64 ch, 16x16,
batch 32), four of them in straight-line code and four in a ``lax.scan`` body. Step: the
config's train rules with every EBM convolution on lax's (the baseline) and on genmod's,
alternated for ``--rounds`` rounds; the last line is the ratio of genmod's img/s to lax's
(``--nfe K`` also prints each side's sampling img/s, K Langevin steps per level).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_edm  # noqa: E402  (puts the repository on sys.path)
import step_throughput  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from genmod.nets import conv  # noqa: E402


def ops():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((32, 16, 16, 64)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 64, 64)) * 0.05, jnp.float32)
    convs = {"lax": lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=conv.NHWC),
             "genmod": lambda x, w: conv.conv2d(x, w, (1, 1), ((1, 1), (1, 1)))}
    print("op (x4)           conv     straight ms   in scan ms   scan / straight")
    for op in ("input grad", "weight grad", "jvp"):
        for name, cv in convs.items():
            f = {"input grad": lambda x, w: jax.grad(lambda x: jnp.sin(cv(x, w)).sum())(x),
                 "weight grad": lambda x, w: jax.grad(lambda w: jnp.sin(cv(x, w)).sum())(w),
                 "jvp": lambda x, w: jax.jvp(lambda x, w: jnp.sin(cv(x, w)), (x, w), (x, w))[1]}[op]
            straight = jax.jit(lambda x, w: sum(f(x * (1 + i * 1e-3), w).sum() for i in range(4)))
            scanned = jax.jit(lambda x, w: lax.scan(lambda c, i: (c + f(x * (1 + i * 1e-3), w).sum(), None),
                                                    0.0, jnp.arange(4.0))[0])
            a, b = (1e3 * peer_edm.timed(lambda: fn(x, w), jax.block_until_ready, 5) for fn in (straight, scanned))
            print(f"{op:<17} {name:<8} {a:11.1f}   {b:10.1f}   {b / a:8.2f}")


@contextlib.contextmanager
def lax_convs():
    """Every ``genmod.nets.conv.conv_general_dilated`` user (the EBM) on lax's convolution."""
    saved, conv.conv_general_dilated = conv.conv_general_dilated, lax.conv_general_dilated
    try:
        yield
    finally:
        conv.conv_general_dilated = saved


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="cdrl_digits")
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--nfe", type=int, help="also time sampling with this many Langevin steps per level")
    p.add_argument("--no-ops", action="store_true", help="only the train step")
    a = p.parse_args(argv)
    if not a.no_ops:
        ops()
    sa = argparse.Namespace(batch=a.batch, override=[], steps=a.steps, nfe=a.nfe)
    res = {"lax": [], "genmod": []}
    for _ in range(a.rounds):
        for name in res:
            print(f"== {name} convolutions")
            with lax_convs() if name == "lax" else contextlib.nullcontext():
                res[name].append({k: v[0] for k, v in step_throughput.measure(a.config, sa).items()})
    for rule in res["lax"][0]:
        t = {k: float(np.median([r[rule] for r in v])) for k, v in res.items()}
        print(f"{a.config} rule {rule}: lax {t['lax']:.1f} ms/step, genmod {t['genmod']:.1f} ms/step, "
              f"genmod / lax img/s {t['lax'] / t['genmod']:.2f}x")


if __name__ == "__main__":
    main()
