"""Where the train-step gap to NVlabs/edm lies: each side's step with and without its 3x3
convolutions, and each convolution shape's oneDNN time on both sides.

    python benchmarks/step_split.py                  # the peer_edm.py network, batch 32
    python benchmarks/step_split.py --shapes         # also the per-shape oneDNN table (ONEDNN_VERBOSE)

Each side (a fresh process, as in ``peer_edm.py``) times its real train step and the same step
with every convolution of kernel > 1x1 replaced by a stand-in of the same shapes that reads its
operands once and writes a constant (genmod: the three ``onednn`` primitives' CPU lowerings;
NVlabs/edm: ``torch.nn.functional.conv2d``). The stand-in step is the rest of the step (norms,
attention, 1x1 convolutions, optimizer; plus the stand-ins' own memory passes, alike on both
sides); the difference is what the convolutions cost in the step, with their scheduling.

``--shapes`` reruns both steps under ``ONEDNN_VERBOSE=1`` and sums oneDNN's own execution times
per convolution shape and pass, in CPU milliseconds per step: genmod's chunks run single-threaded
(their times add up), torch's primitives run on a team of ``torch.get_num_threads()`` (times x
threads). Steady state only: the first four steps are dropped (first executions ran up to 2x
slower).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_edm  # noqa: E402

MARK = "STEP_SPLIT_MARK"


def _alternate(fns, sync, rounds, steps):
    """Median seconds per call of each fn, alternated round by round (the host's load drifts)."""
    out = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k].append(peer_edm.timed(fn, sync, steps, warm_s=1.0))
    return {k: statistics.median(v) for k, v in out.items()}


def side_genmod(a):
    import jax
    import jax.numpy as jnp
    from jax.interpreters import mlir

    from genmod.nets import onednn

    run, state, batch = peer_edm.genmod_stage(a)
    box = [state]
    onednn.available()

    def compiled():
        return jax.jit(lambda *x: run.method.rules()["train"](*x)).lower(box[0], batch, run.frozen).compile()

    real = compiled()
    if a.verbose:
        return _verbose_steps(lambda: jax.block_until_ready(_step(real, box, batch, run)))

    def stand_in(prim):
        def f(x, y, **p):
            return jnp.zeros(onednn._shape(prim, x, y, **p), x.dtype) + jnp.mean(x) * jnp.mean(y)
        return mlir.lower_fun(f, multiple_results=False)

    for prim in onednn._PRIMS:
        mlir.register_lowering(prim, stand_in(prim), platform="cpu")
    rest = compiled()
    fns = {"step": lambda: _step(real, box, batch, run), "rest": lambda: _step(rest, box, batch, run)}
    return _alternate(fns, jax.block_until_ready, a.rounds, a.steps)


def _step(compiled, box, batch, run):
    box[0], m = compiled(box[0], batch, run.frozen)
    return m


def side_torch(a):
    import torch
    import torch.nn.functional as F

    net, x, step = peer_edm.torch_step(a)
    if a.verbose:
        return _verbose_steps(step)
    conv2d = F.conv2d

    def stand_in(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        if groups != 1 or w.shape[2] * w.shape[3] == 1:
            return conv2d(x, w, b, stride, padding, dilation, groups)
        st = (stride, stride) if isinstance(stride, int) else stride
        pd = (padding, padding) if isinstance(padding, int) else padding
        ho, wo = ((x.shape[i + 2] + 2 * pd[i] - w.shape[i + 2]) // st[i] + 1 for i in (0, 1))
        y = torch.zeros(x.shape[0], w.shape[0], ho, wo) + x.mean() * w.mean()
        return y if b is None else y + b.reshape(1, -1, 1, 1)

    def with_stand_in():
        F.conv2d = stand_in
        try:
            return step()
        finally:
            F.conv2d = conv2d

    return _alternate({"step": step, "rest": with_stand_in}, lambda r: r, a.rounds, a.steps)


def _verbose_steps(step, warm=4, n=2):
    """Runs warm + n steps; prints a mark after the warm-up (oneDNN's verbose lines follow)."""
    for i in range(warm + n):
        if i == warm:
            print(MARK, flush=True)
        step()
    print(MARK, flush=True)
    return {"steps": n}


def shapes(lines, scale):
    """ONEDNN_VERBOSE exec lines -> {(pass, shape): CPU ms per batch-size-normalised step}."""
    out = collections.Counter()
    for line in lines:
        f = line.strip().split(",")
        if len(f) < 8 or "exec" not in f[1:4]:  # "onednn_verbose,exec,..." (3.2) / ",v1,primitive,exec,..."
            continue
        prop = next((x for x in f if x in ("forward_training", "backward_data", "backward_weights")), None)
        desc = next((x for x in f if re.match(r"mb\d+_", x)), None)
        if prop is None or desc is None or "kh1" in desc and "kw1" in desc:
            continue  # not a convolution, or a 1x1 one (genmod runs those as dots)
        out[(prop, re.sub(r"^mb\d+_", "", desc))] += float(f[-1]) * scale
    return out


def verbose_side(script, args, side, threads):
    env = dict(peer_edm.side_env(), ONEDNN_VERBOSE="1")
    proc = subprocess.run([sys.executable, os.path.abspath(script), *args, "--side", side, "--verbose"],
                          capture_output=True, text=True, cwd=peer_edm.ROOT, env=env)
    parts = proc.stdout.split(MARK)
    if proc.returncode or len(parts) < 3:
        sys.exit(f"step_split.py: the {side} side failed:\n{proc.stderr[-2000:]}")
    steps = json.loads([x for x in parts[2].splitlines() if x.startswith("RESULT ")][0][7:])["steps"]
    return shapes(parts[1].splitlines(), threads / steps)


def main(argv=None):
    p = peer_edm.peer_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--steps", type=int, default=4, help="timed steps per round and variant")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds (medians)")
    p.add_argument("--shapes", action="store_true", help="also the per-shape oneDNN table")
    p.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if peer_edm.run_child(a, {"torch": side_torch, "genmod": side_genmod}, "step_split.py"):
        return
    args = [x for x in (argv if argv is not None else sys.argv[1:]) if x != "--shapes"]
    res = {s: peer_edm.run_side(__file__, args, s) for s in ("torch", "genmod")}
    print(f"net: SongUNet DDPM++ res {a.res} ch {a.ch} mult {a.mult} blocks {a.blocks} attn {a.attn} "
          f"batch {a.batch}; {peer_edm.cpu_model()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}; "
          f"medians of {a.rounds} alternated rounds of {a.steps} steps")
    print("| ms per step | NVlabs/edm | genmod | genmod time / edm |\n|---|---|---|---|")
    rows = {"step": "train step", "rest": "without its 3x3 convolutions (stand-ins)", "conv": "its 3x3 convolutions (difference)"}
    for r in res.values():
        r["conv"] = r["step"] - r["rest"]
    for k, what in rows.items():
        e, g = 1e3 * res["torch"][k], 1e3 * res["genmod"][k]
        print(f"| {what} | {e:.0f} | {g:.0f} | {g / e:.2f} |")
    if a.shapes:
        import torch

        t = verbose_side(__file__, args, "torch", torch.get_num_threads())
        g = verbose_side(__file__, args, "genmod", 1)
        print("\noneDNN CPU ms per step, by convolution shape and pass (steady state):")
        print("| pass | shape | NVlabs/edm | genmod | genmod time / edm |\n|---|---|---|---|---|")
        for k in sorted(set(t) | set(g)):
            tv, gv = t.get(k, 0.0), g.get(k, 0.0)
            print(f"| {k[0]} | {k[1]} | {tv:.1f} | {gv:.1f} | {gv / tv if tv else float('nan'):.2f} |")
        print(f"| all | | {sum(t.values()):.0f} | {sum(g.values()):.0f} | {sum(g.values()) / sum(t.values()):.2f} |")


if __name__ == "__main__":
    main()
