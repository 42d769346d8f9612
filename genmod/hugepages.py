"""Transparent huge pages for glibc's large allocations, set by re-executing ``genmod.launch``.

On XLA:CPU a train step allocates large short-lived buffers: Eigen's packed im2col for each
convolution (76 MB for a 3x3 64 -> 64 convolution at 32x32, batch 32) and the step's temporaries.
glibc serves requests that large with ``mmap`` and unmaps them on ``free``, so their pages are
faulted in again on every step: 11-12% of a DDPM++ train step's CPU time was in the kernel's
page-fault path, most of it under XLA's kernels touching fresh memory (``perf``;
docs/benchmarks.md "Performance, round 7"). With the glibc tunable ``glibc.malloc.hugetlb=1``
(glibc >= 2.35) glibc asks for transparent huge pages on those mappings, up to 512 times fewer
faults: the train step ran 1.02-1.22x faster in four comparisons on a 2-core Xeon and 1.19x on
a 2-core Zen 4 (``python benchmarks/malloc_hugepages.py``; round 8). The forward and Heun
sampling measured 0.84-1.24x and 1.09x / 0.92x, so only training uses it. glibc reads
tunables only when a process starts, so ``genmod.launch`` re-executes itself (same PID, same
arguments) with it added. ``GENMOD_MALLOC_HUGEPAGES=0`` turns this off; a ``glibc.malloc.hugetlb``
the user set is kept as it is.
"""
from __future__ import annotations

import os
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "GENMOD_MALLOC_HUGEPAGES"
THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def machine() -> tuple[str, tuple[int, ...] | None, str]:
    """(OS name, glibc's version or None, the kernel's THP mode: 'always' / 'madvise' / 'never' / '')."""
    try:
        lib = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        lib = ""
    version = None
    if lib.startswith("glibc "):
        version = tuple(int(p) for p in lib.split()[1].split(".")[:2] if p.isdigit())
    mode = ""
    try:
        with open(THP) as f:
            mode = f.read().split("[", 1)[1].split("]", 1)[0]
    except (OSError, IndexError):
        pass
    return sys.platform, version, mode


def env_with_hugepages(env: dict, platform: str, glibc: tuple | None, thp: str) -> dict | None:
    """``env`` with the tunable appended to ``GLIBC_TUNABLES``, or None where it would change
    nothing or was already decided: not Linux, not glibc >= 2.35, THP off, opted out, or set."""
    tunables = env.get("GLIBC_TUNABLES", "")
    if (platform != "linux" or glibc is None or glibc < (2, 35) or thp not in ("always", "madvise")
            or env.get(OPT_OUT, "1") == "0" or "glibc.malloc.hugetlb" in tunables):
        return None
    return {**env, "GLIBC_TUNABLES": f"{tunables}:{TUNABLE}" if tunables else TUNABLE}


def reexec() -> None:
    """Re-executes this interpreter with the same command line and the tunable, where
    :func:`env_with_hugepages` says so; returns otherwise. Call it first in a ``__main__`` block:
    it replaces the process (``os.execve``), so nothing before it should have side effects."""
    new = env_with_hugepages(dict(os.environ), *machine())
    if new is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], new)
