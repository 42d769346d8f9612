"""Where genmod's EDM train step spends its time: a per-op profile of the compiled step, grouped
by kind (conv forward / input-gradient / weight-gradient per shape, dots, transposes,
reductions, elementwise fusions), from XLA's own per-thunk trace events.

    python benchmarks/profile_step.py                       # the peer_edm.py network, batch 32
    python benchmarks/profile_step.py --res 8 --ch 32 --mult 1,2 --blocks 1 --attn 4 --top 15
    python benchmarks/profile_step.py --peer     # also NVlabs/edm's step under torch.profiler

``--peer`` splits both steps into convolutions and everything else. genmod's convolutions run on
Eigen's intra-op pool, outside XLA's trace events, so its convolution time is the step's wall
time less its traced ops; NVlabs/edm's is the self time of torch's convolution ops (oneDNN).
That split undercounts genmod's convolutions: they run asynchronously on the same two threads,
and a thunk traced while one runs includes waiting for it (docs/benchmarks.md, "Performance,
round 7": by ``perf``, convolutions and their packing are about 60% of the step's CPU time).
Read the per-kind figures as an upper bound for each kind, not a split.

Needs ``XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true`` (set here before jax is imported). The
step is the real train rule (loss, backward, Adam, EMA) of ``benchmarks/peer_edm.py``'s config.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_edm  # noqa: E402


def fused_kinds(hlo: str) -> dict:
    """fusion instruction name -> what its computation does (the op that costs)."""
    comps, cur = {}, None
    for line in hlo.splitlines():
        m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if m:
            cur = comps.setdefault(m.group(1), [])
        elif cur is not None:
            cur.append(line)
    calls = {}
    for lines in comps.values():
        for line in lines:
            m = re.search(r"%?([\w.\-]+) = .* fusion\(.*calls=%?([\w.\-]+)", line)
            if m:
                calls[m.group(1)] = "\n".join(comps.get(m.group(2), []))
    kinds = {}
    for name, body in calls.items():
        conv = re.search(r"= (\w+\[[\d,]+\])\S* convolution\(.*?window=\{([^}]*)\}, dim_labels=(\S+)", body)
        if conv:
            win = dict(kv.split("=") for kv in conv.group(2).split())
            # the weight gradient is a conv whose window is the whole feature map
            role = "weight-grad" if "x" in win["size"] and int(win["size"].split("x")[0]) > 3 else "fwd/input-grad"
            kinds[name] = f"conv {role} {win['size']} -> {conv.group(1)}"
        elif " dot(" in body:
            kinds[name] = "dot"
        elif " reduce(" in body:
            kinds[name] = "reduce (norms, loss, bias grads)"
        elif " transpose(" in body or "transpose" in name:
            kinds[name] = "transpose / layout copy"
        elif " concatenate(" in body:
            kinds[name] = "concatenate"
        else:
            kinds[name] = "elementwise fusion"
    return kinds


def torch_split(a) -> dict:
    """NVlabs/edm's step in ms: convolution ops (forward and backward, self time) vs the rest."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    _, _, step = peer_edm.torch_step(a)
    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    wall = 1e3 * (time.perf_counter() - t0) / a.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            step()
    ops = {e.key: e.self_cpu_time_total / 1e3 / a.steps for e in prof.key_averages()}
    is_conv = lambda k: "convolution" in k.lower()  # noqa: E731 (aten ops and autograd's wrappers)
    conv = sum(t for k, t in ops.items() if is_conv(k))
    return {"wall": wall, "conv": conv, "other": sum(ops.values()) - conv,
            "top": sorted(((t, k) for k, t in ops.items() if not is_conv(k)), reverse=True)[:8]}


def main(argv=None):
    p = peer_edm.shape_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--steps", type=int, default=2, help="profiled steps (after two warm-up steps)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--peer", action="store_true", help="also profile NVlabs/edm's step (torch), in a subprocess")
    p.add_argument("--edm-dir", default=peer_edm.PEER, help="NVlabs/edm checkout (its training/ is imported)")
    p.add_argument("--side", choices=("torch",), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.side:
        print("RESULT " + json.dumps(torch_split(a)), flush=True)
        return
    peer = None
    if a.peer:  # first, alone: no jax thread pool beside torch's
        if not os.path.isdir(os.path.join(a.edm_dir, "training")):
            sys.exit(f"profile_step.py: no NVlabs/edm at {a.edm_dir} (expected its training/); pass --edm-dir")
        args = [x for x in (argv if argv is not None else sys.argv[1:]) if x != "--peer"]
        peer = peer_edm.run_side(__file__, args, "torch")
    import jax

    run, state, batch = peer_edm.genmod_stage(a)
    rule = jax.jit(run.method.rules()["train"])
    for _ in range(2):
        state, m = rule(state, batch, run.frozen)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        state, m = rule(state, batch, run.frozen)
    jax.block_until_ready(m)
    wall = 1e3 * (time.perf_counter() - t0) / a.steps
    d = tempfile.mkdtemp()
    with jax.profiler.trace(d, create_perfetto_trace=True):
        for _ in range(a.steps):
            state, m = rule(state, batch, run.frozen)
        jax.block_until_ready(m)
    events = json.load(gzip.open(sorted(glob.glob(f"{d}/**/*.trace.json.gz", recursive=True))[-1]))
    events = events["traceEvents"] if isinstance(events, dict) else events
    kinds = fused_kinds(rule.lower(state, batch, run.frozen).compile().as_text())
    by, n = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") != "X" or "dur" not in e or not re.fullmatch(r"[\w\-]+(\.\d+)?", name):
            continue  # keep XLA's thunks (fusion.123, copy.4, ...), not Python or runtime scopes
        k = kinds.get(name, "other: " + name.split(".")[0])
        by[k] += e["dur"] / 1e3 / a.steps
        n[k] += 1 / a.steps
    total = sum(by.values())
    coarse = collections.Counter()
    for k, t in by.items():
        coarse[k.split(" ->")[0].rsplit(" ", 1)[0] if k.startswith("conv") else k] += t
    print(f"net: res {a.res} ch {a.ch} mult {a.mult} blocks {a.blocks} attn {a.attn} batch {a.batch}; "
          f"{total:.0f} ms of ops per step ({jax.devices()[0].device_kind})")
    # Thunks that hand their work to the intra-op pool (Eigen's convolutions, genmod's default on
    # several cores) end their trace event before the work does: their time shows up only here.
    print(f"wall {wall:.0f} ms per step, untraced; wall - ops {wall - total:.0f} ms")
    print("by kind:")
    for k, t in coarse.most_common():
        print(f"  {t:8.1f} ms  {100 * t / total:5.1f}%  {k}")
    print(f"top {a.top}:")
    for k, t in by.most_common(a.top):
        print(f"  {t:8.1f} ms  {100 * t / total:5.1f}%  x{n[k]:.0f}  {k}")
    if peer:
        print("| ms per step | NVlabs/edm (torch) | genmod |\n|---|---|---|")
        print(f"| convolutions | {peer['conv']:.0f} | {wall - total:.0f} (wall - traced ops) |")
        print(f"| everything else | {peer['other']:.0f} | {total:.0f} (traced ops) |")
        print(f"| step (wall, unprofiled) | {peer['wall']:.0f} | {wall:.0f} |")
        print("NVlabs/edm's largest other ops: " + ", ".join(f"{k} {t:.0f}" for t, k in peer["top"]))


if __name__ == "__main__":
    main()
