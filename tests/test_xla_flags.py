"""genmod's XLA:CPU default: convolutions on Eigen (all cores), dots and reductions on YNNPACK."""
import os
import re

import jax
import jax.numpy as jnp

import genmod
from genmod import xla_cpu_flags

F = f"{genmod.YNN_FLAG}={genmod.YNN_WITHOUT_CONV}"


def test_flag_is_added_only_where_it_was_checked_and_never_over_the_users():
    assert xla_cpu_flags("", 2, "0.10.2") == F
    assert xla_cpu_flags("--xla_force_host_platform_device_count=4", 16, "0.10.0") == \
        "--xla_force_host_platform_device_count=4 " + F
    assert xla_cpu_flags("", 1, "0.10.2") == ""  # one core: YNNPACK's kernels are the faster
    assert xla_cpu_flags("", 8, "0.11.0") == ""  # unchecked jaxlib: an unknown flag aborts XLA
    assert xla_cpu_flags("", 8, "0.9.2") == ""
    mine = f"{genmod.YNN_FLAG}="
    assert xla_cpu_flags(mine, 8, "0.10.2") == mine


def _ynn_ops(fn, *args):
    """Which of convolution / dot / reduce the compiled module runs inside YNNPACK fusions."""
    old = jax.config.read("jax_disable_most_optimizations")  # other test files turn them off
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        hlo = jax.jit(fn).lower(*args).compile().as_text()
    finally:
        jax.config.update("jax_disable_most_optimizations", old)
    comps = dict(re.findall(r"\n(%\S+) [^\n]*\{\n(.*?)\n\}", hlo, re.S))
    bodies = [comps.get(c, "") for c in re.findall(r"%ynn_fusion\S* = \S+ fusion\([^\n]*calls=(%[\w.\-]+)", hlo)]
    return {op for op in ("convolution", "dot", "reduce") for b in bodies if f" {op}(" in b}


def test_convolutions_leave_ynnpack_and_dots_and_reductions_stay():
    def f(x, w, a, b):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y, a @ b, (b * b).sum(0)

    args = (jnp.ones((2, 16, 16, 32)), jnp.ones((3, 3, 32, 32)), jnp.ones((512, 256)), jnp.ones((256, 256)))
    ops = _ynn_ops(f, *args)
    flags, on = os.environ["XLA_FLAGS"], F in os.environ["XLA_FLAGS"]
    users = genmod.YNN_FLAG in flags and not on  # the user's own setting wins
    assert on == (xla_cpu_flags("", *genmod.machine()) != "") or users  # on with CI's 2 cores, jaxlib 0.10
    assert ("convolution" in ops) != on and {"dot", "reduce"} <= ops, (on, ops)
