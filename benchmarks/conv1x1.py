"""``unet.conv1x1`` (a 1x1 convolution whose derivatives are matmuls) against lax's convolution:
the backward of single 1x1 convolutions at DDPM++'s shapes, then the whole DDPM++ train step
with the old path put back, alternating subprocesses, medians of ``--rounds``.

    python benchmarks/conv1x1.py                  # DDPM++ ch 64, mult 1-2-2, 32x32, batch 32
    python benchmarks/conv1x1.py --res 8 --ch 32 --mult 1,2 --blocks 1 --attn 4 --batch 64
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_edm  # noqa: E402  (genmod_stage, timed, shape flags; it puts the repo on the path)


def per_conv(batch, n=8):
    """ms per backward (input + weight gradient) of lax's conv and of conv1x1, interleaved."""
    import jax

    from genmod.nets import unet

    def ms(f, *a):
        jax.block_until_ready(f(*a))
        t = time.perf_counter()
        for _ in range(n):
            jax.block_until_ready(f(*a))
        return (time.perf_counter() - t) / n * 1e3

    for h, ci, co in [(32, 64, 192), (32, 192, 64), (16, 128, 384), (16, 128, 128)]:
        k = jax.random.split(jax.random.PRNGKey(0), 3)
        x, w = jax.random.normal(k[0], (batch, h, h, ci)), 0.1 * jax.random.normal(k[1], (1, 1, ci, co))
        dy = jax.random.normal(k[2], (batch, h, h, co))
        fs = [jax.jit(lambda x, w, dy, f=f: jax.vjp(f, x, w)[1](dy))
              for f in (lambda x, w: unet._conv(x, w, 0), unet.conv1x1)]
        t = np.min([[ms(f, x, w, dy) for f in fs] for _ in range(3)], axis=0)
        print(f"1x1 conv {ci}->{co} at {h}x{h}, batch {batch}: backward lax {t[0]:.1f} ms, conv1x1 {t[1]:.1f} ms, "
              f"{t[0] / t[1]:.2f}x", flush=True)


def side(a):
    import jax

    from genmod.nets import unet

    if a.side == "lax":
        unet.conv1x1 = lambda x, w: unet._conv(x, w, 0)
    run, state, batch = peer_edm.genmod_stage(a)
    rule = jax.jit(run.method.rules()["train"], donate_argnums=0)
    box = [state]

    def step():
        box[0], m = rule(box[0], batch, run.frozen)
        return m

    print(json.dumps({"img_s": a.batch / peer_edm.timed(step, jax.block_until_ready, a.steps)}))


def main(argv=None):
    p = peer_edm.shape_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--steps", type=int, default=4, help="timed train steps per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--side", choices=("lax", "conv1x1"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.side:
        return side(a)
    per_conv(a.batch)
    res = {"lax": [], "conv1x1": []}
    for r in range(a.rounds):
        for s in res:
            out = subprocess.run([sys.executable, __file__, "--side", s] + (argv or sys.argv[1:]),
                                 capture_output=True, text=True, check=True)
            res[s].append(json.loads(out.stdout.strip().splitlines()[-1])["img_s"])
            print(f"round {r} {s}: train {res[s][-1]:.2f} img/s", flush=True)
    lax, new = np.median(res["lax"]), np.median(res["conv1x1"])
    print(f"train step (medians of {a.rounds}): lax 1x1 {lax:.2f} img/s, conv1x1 {new:.2f} img/s, {new / lax:.3f}x")


if __name__ == "__main__":
    main()
