"""Multi-process training through jax.distributed: 2 local processes x 2 CPU devices equal
1 process x 4 devices, and checkpoints resume across the two topologies."""
import os
import socket
import subprocess
import sys

import pytest

from genmod import train
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = dict(batch_size=32, log_every=1, ckpt_every=100, sample_every=0, num_preview=0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(workdir, total_steps):
    port = free_port()
    args = [f"--config.{k}={v}" for k, v in {**OVERRIDES, "total_steps": total_steps}.items()]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-m", "genmod.launch", "--config", "edm_toy", "--workdir", workdir,
                               "--coordinator", f"127.0.0.1:{port}", "--num_processes", "2", "--process_id", str(i),
                               *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


@pytest.mark.slow
def test_two_processes_match_one_and_resume_across_topologies(tmp_path):
    mp, ref3, ref5 = str(tmp_path / "mp"), str(tmp_path / "ref3"), str(tmp_path / "ref5")
    quiet = lambda *_: None  # noqa: E731
    outs = run_two_processes(mp, 3)
    assert "step 3/3" in outs[0] and "step 3/3" not in outs[1]  # logs from process 0 only
    train.train(helpers.config("edm_toy", total_steps=3, **OVERRIDES), ref3, log=quiet)  # 1 process x 4 devices
    helpers.assert_trees_equal(helpers.raw_state(mp)["params"], helpers.raw_state(ref3)["params"], atol=1e-5)
    # 2x2 checkpoint -> resumed on 1x4; 1x4 checkpoint -> resumed on 2x2; both equal 5 straight steps
    train.train(helpers.config("edm_toy", total_steps=5, **OVERRIDES), ref5, log=quiet)
    train.train(helpers.config("edm_toy", total_steps=5, **OVERRIDES), mp, log=quiet)
    run_two_processes(ref3, 5)
    for wd in (mp, ref3):
        s = helpers.raw_state(wd)
        assert int(s["step"]) == 5
        helpers.assert_trees_equal(s["params"], helpers.raw_state(ref5)["params"], atol=1e-5)
