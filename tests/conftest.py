"""Test setup: 4 simulated CPU devices (the sharded path runs everywhere) and fast compiles.

Fast compiles (`jax_disable_most_optimizations`) make a step up to 2x slower; a test marked
`optimized` trains for hundreds of steps, so it compiles with XLA's optimisations instead
(the fast toy robustness guards: 106 -> 85 s of test time, one at a time; the slow iCT and CD
toy trainings: 130 -> 65 s and 63 -> 56 s; CrossFlow's 600-step caption test: 138 -> 97 s).
The slow DMD2, DisBack and other CrossFlow trainings measured the same or slower marked (their compile
costs more than their steps gain): not marked.

No persistent compilation cache: on XLA:CPU (jaxlib 0.10.2) a multi-device train step loaded
back from the cache can run its collectives in a different order on each simulated device and
abort in a rendezvous timeout (seen with crossflow_sr:smoke in CI)."""
import os
import sys

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=4" if "device_count" not in os.environ["XLA_FLAGS"] else ""
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(autouse=True)
def _optimized(request):
    """`@pytest.mark.optimized`: XLA's optimisations on for this test (a global flag, restored)."""
    if request.node.get_closest_marker("optimized") is None:
        yield
        return
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", True)
