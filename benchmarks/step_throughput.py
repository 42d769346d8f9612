"""Train-step img/s of every update rule of a config's method (and sampling img/s), measured
on the real jitted rules with the config's own network, on whatever device JAX sees.

    python benchmarks/step_throughput.py --config cm_toy
    python benchmarks/step_throughput.py --config quickstart --batch 64
    python benchmarks/step_throughput.py --config cm_cifar10 --batch 8 --steps 3 --nfe 1
    python benchmarks/step_throughput.py --config scm_digits --baseline quickstart --batch 64

Prints one line per rule: img/s and ms/step (compile excluded) and XLA's temporary memory of
the compiled step, plus the device. ``--baseline``: the same for another config's rules at the
same batch, measured in the same run, and each rule's ratios to the baseline's first rule (e.g.
an sCM / MeanFlow JVP step against an EDM step on the same network).
"""
import argparse
import os
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from genmod import config_lib, data, sharding, train


def measure(name, a):
    """{rule: (ms/step, temp MiB)} of config ``name`` (and the sampling line with --nfe)."""
    c = config_lib.load(name)
    if a.batch:
        config_lib.override(c, "batch_size", str(a.batch))
    for o in a.override:
        config_lib.override(c, *o.split("=", 1))
    if c.data.source.startswith(("tfds:", "npz:", "idx:", "cifar10", "imagenet64")):  # throughput needs no real data
        shape = "x".join(map(str, c.data.shape))
        config_lib.override(c, "data.source", f"synthetic:{shape}")
    mesh = sharding.make_mesh(c.mesh)
    pipe = data.Pipeline(c.data, c.batch_size, sharding.batch_sharding(mesh), c.seed)
    run = next(train.iter_stages(c, tempfile.mkdtemp(), mesh, pipe.spec()))
    state = run.load()[0]
    batch = pipe.batch(0)
    print(f"config={name} method={c.method} batch={c.batch_size} device={jax.devices()[0].device_kind} "
          f"x{jax.device_count()}")
    out = {}
    for rule_name, fn in run.method.rules().items():
        t = time.perf_counter()
        rule = jax.jit(fn, donate_argnums=0).lower(state, batch, run.frozen).compile()
        compile_s = time.perf_counter() - t
        mem = rule.memory_analysis()
        temp = getattr(mem, "temp_size_in_bytes", 0) / 2**20 if mem is not None else float("nan")
        state, m = rule(state, batch, run.frozen)
        jax.block_until_ready(m)
        t = time.perf_counter()
        for _ in range(a.steps):
            state, m = rule(state, batch, run.frozen)
        jax.block_until_ready(m)
        dt = (time.perf_counter() - t) / a.steps
        out[rule_name] = (dt * 1e3, temp)
        print(f"rule {rule_name:>8}: {c.batch_size / dt:10.1f} img/s  {dt * 1e3:9.1f} ms/step  temp {temp:8.1f} MiB  "
              f"(compile {compile_s:.1f} s)")
    if a.nfe:
        keys = train.seed_keys(range(c.batch_size))
        fn = jax.jit(lambda p, k, f: run.method.sample(p, k, f, nfe=a.nfe))
        params = run.method.sample_params(state)
        jax.block_until_ready(fn(params, keys, run.frozen))
        t = time.perf_counter()
        for _ in range(a.steps):
            res = fn(params, keys, run.frozen)
        jax.block_until_ready(res)
        dt = (time.perf_counter() - t) / a.steps
        print(f"sample nfe={a.nfe}: {c.batch_size / dt:10.1f} img/s")
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--baseline", help="a config measured in the same run; ratios against its first rule")
    p.add_argument("--batch", type=int, help="override batch_size")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--nfe", type=int, help="also time sampling with this NFE")
    p.add_argument("--override", action="append", default=[], help="a.b=value (repeatable; not the baseline's)")
    a = p.parse_args()
    if a.baseline:
        base_ms, base_mem = next(iter(measure(a.baseline, argparse.Namespace(**{**vars(a), "override": [],
                                                                                 "nfe": None})).values()))
    for rule_name, (ms, mem) in measure(a.config, a).items():
        if a.baseline:
            print(f"{a.config}/{rule_name} vs {a.baseline}: step time x{ms / base_ms:.2f}, temp memory x{mem / base_mem:.2f}")

if __name__ == "__main__":
    main()
