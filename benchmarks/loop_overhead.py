"""Loop overhead: img/s of the full training loop (data pipeline, sharding, metrics, logging,
checkpointing) vs a bare jitted step of the same rule on one fixed batch, same run.

    python benchmarks/loop_overhead.py [--config edm_toy] [--steps 2000]

Prints both figures and their ratio (goal >= 0.95).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genmod import config_lib, data, sharding, train


def bare(config, steps):
    """The same jitted rule, sharded the same way, on one device-resident batch."""
    mesh = sharding.make_mesh(config.mesh)
    pipe = data.Pipeline(config.data, config.batch_size, sharding.batch_sharding(mesh), config.seed)
    run = next(train.iter_stages(config, tempfile.mkdtemp(), mesh, pipe.spec()))
    state = run.load()[0]
    rule = jax.jit(run.method.rules()[run.method.schedule(0)], donate_argnums=0)
    batch = pipe.batch(0)
    state, m = rule(state, batch, run.frozen)
    jax.block_until_ready(m)
    t = time.perf_counter()
    for _ in range(steps):
        state, m = rule(state, batch, run.frozen)
    jax.block_until_ready(m)
    return steps * config.batch_size / (time.perf_counter() - t)


def full(config, steps):
    wd = tempfile.mkdtemp()
    rates = []
    train.train(config, wd, log=lambda s: None)
    with open(os.path.join(wd, "metrics.jsonl")) as f:
        import json

        rates = [json.loads(line)["img_per_sec"] for line in f if "img_per_sec" in line]
    shutil.rmtree(wd, ignore_errors=True)
    return float(np.median(rates[1:] if len(rates) > 1 else rates))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="edm_toy")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3, help="alternating bare/full rounds (medians)")
    a = p.parse_args()
    c = config_lib.load(a.config)
    with c.unlocked():
        c.total_steps, c.log_every, c.ckpt_every, c.sample_every = a.steps, a.steps // 10, a.steps, 0
    bs, fs = [], []
    for _ in range(a.rounds):  # alternate, so background load hits both alike
        bs.append(bare(c, a.steps))
        fs.append(full(c, a.steps))
    b, f = float(np.median(bs)), float(np.median(fs))
    print(f"config={a.config} devices={jax.device_count()} batch={c.batch_size} steps={a.steps} rounds={a.rounds}")
    print(f"bare jitted step: {b:,.0f} img/s  (rounds: {', '.join(f'{x:,.0f}' for x in bs)})")
    print(f"full loop:        {f:,.0f} img/s  (rounds: {', '.join(f'{x:,.0f}' for x in fs)}; compile excluded)")
    print(f"ratio full/bare:  {f / b:.3f}")


if __name__ == "__main__":
    main()
