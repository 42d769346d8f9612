"""genmod's step with and without glibc's huge-page tunable (``genmod.hugepages``), same run.

    python benchmarks/malloc_hugepages.py                # DDPM++ ch 64, batch 32 (peer_edm.py's net)
    python benchmarks/malloc_hugepages.py --res 8 --ch 32 --mult 1,2 --blocks 1 --attn 4 --batch 64

Each variant runs ``peer_edm.py --side genmod`` (train step, forward, Heun sampling) in its own
process, since glibc reads tunables only at start-up; variants alternate for ``--rounds`` rounds
and the medians are printed with their ratio. ``--side torch`` measures NVlabs/edm's step the
same way, to see whether the tunable moves the peer too.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_edm  # noqa: E402

from genmod import hugepages  # noqa: E402


def main(argv=None):
    p = peer_edm.shape_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--nfe", type=int, default=35)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--side", choices=("genmod", "torch"), default="genmod")
    a = p.parse_args(argv)
    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    machine = hugepages.machine()
    huge = hugepages.env_with_hugepages(plain, *machine)
    if huge is None:
        sys.exit(f"malloc_hugepages.py: the tunable does not apply here (OS, glibc, THP): {machine}")
    args = list(argv if argv is not None else sys.argv[1:])  # peer_edm.py takes the same flags
    runs = {"default": [], "hugepages": []}
    for r in range(a.rounds):
        for name, env in (("default", plain), ("hugepages", huge)):
            runs[name].append(peer_edm.run_side(peer_edm.__file__, args, a.side, env))
            print(f"round {r} {name:>9}: " + ", ".join(f"{k} {a.batch / runs[name][-1][k]:.2f} img/s"
                                                     for k in ("train", "forward", "sample")), flush=True)
    print(f"{a.side}, res {a.res} ch {a.ch} mult {a.mult} blocks {a.blocks} attn {a.attn} batch {a.batch}; "
          f"{os.cpu_count()} CPUs; glibc {machine[1]}, THP {machine[2]}; medians of {a.rounds}")
    print("| what | default img/s | GLIBC_TUNABLES=" + hugepages.TUNABLE + " img/s | ratio |\n|---|---|---|---|")
    for k in ("train", "forward", "sample"):
        d, h = (a.batch / float(np.median([x[k] for x in runs[n]])) for n in ("default", "hugepages"))
        print(f"| {k} | {d:.2f} | {h:.2f} | {h / d:.2f}x |")


if __name__ == "__main__":
    main()
