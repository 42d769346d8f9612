"""Test setup: 4 simulated CPU devices (the sharded path runs everywhere), fast compiles,
and a persistent compilation cache so repeated identical programs compile once."""
import os
import sys
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=4" if "device_count" not in os.environ["XLA_FLAGS"] else ""
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)
jax.config.update("jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "genmod_test_jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
