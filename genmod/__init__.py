"""genmod: fast few-step generative models in JAX/Flax on one sharded training loop."""
import os

__version__ = "0.1.0"

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# jaxlib 0.10's XLA:CPU hands dots, convolutions and reductions to YNNPACK. Its convolution
# fusion runs on one thread, Eigen's uses every core (docs/benchmarks.md "Performance"), so on a
# multi-core CPU genmod keeps the other two and leaves convolutions to Eigen.
YNN_XLA_DEFAULT = ("LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,"
                   "LIBRARY_FUSION_TYPE_REDUCE")
YNN_WITHOUT_CONV = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
YNN_JAXLIB = ((0, 10),)  # versions whose fusion-type names and default list were checked


def xla_cpu_flags(flags: str, ncpu: int, jaxlib: str) -> str:
    """``XLA_FLAGS`` with convolutions sent to Eigen, where that is known to be faster: more than
    one core, a jaxlib whose flag was checked (an unknown flag aborts XLA), and no setting of the
    flag by the user (theirs wins, e.g. ``--xla_cpu_experimental_ynn_fusion_type=`` for none)."""
    version = tuple(int(p) for p in jaxlib.split(".")[:2] if p.isdigit())
    if ncpu < 2 or version not in YNN_JAXLIB or YNN_FLAG in flags:
        return flags
    return f"{flags} {YNN_FLAG}={YNN_WITHOUT_CONV}".strip()


def machine() -> tuple[int, str]:
    """(cores this process may use, jaxlib's version or "")."""
    try:
        from jaxlib.version import __version__ as jaxlib  # jax imports it anyway: no start-up cost
    except ImportError:
        jaxlib = ""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, jaxlib


def _set_xla_cpu_flags():
    """Applied on import: XLA reads XLA_FLAGS once, when its first backend starts."""
    flags = os.environ.get("XLA_FLAGS", "")
    if (new := xla_cpu_flags(flags, *machine())) != flags:
        os.environ["XLA_FLAGS"] = new


_set_xla_cpu_flags()
