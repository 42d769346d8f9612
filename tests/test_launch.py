"""End-to-end: the real ``launch`` and ``sample`` entry points, their errors, preemption."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from genmod import launch, sample

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(capsys, *argv):
    rc = launch.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_quickstart_smoke_end_to_end(tmp_path, capsys):
    wd = str(tmp_path / "qs")
    rc, out, _ = run_main(capsys, "--config", "quickstart:smoke", "--workdir", wd)
    assert rc == 0 and "done" in out
    for f in ("config.json", "metrics.jsonl", "samples/main_00000004.png", "ckpt/main/4"):
        assert os.path.exists(os.path.join(wd, f)), f
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(os.path.join(wd, "tb")))
    rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
    assert {"train/loss", "net/grad_norm", "net/lr", "steps_per_sec", "img_per_sec"} <= set(rows[-1])
    # the same command again resumes: nothing left to do
    rc, out, _ = run_main(capsys, "--config", "quickstart:smoke", "--workdir", wd)
    assert rc == 0 and "complete at step 4" in out
    # sampling: files, dtype, and each image determined by its seed alone
    assert sample.main(["--workdir", wd, "--num", "6", "--out", str(tmp_path / "s.npz"), "--batch", "4"]) == 0
    assert sample.main(["--workdir", wd, "--seeds", "3-5", "--out", str(tmp_path / "t.npz"), "--nfe", "3"]) == 0
    s, t = np.load(tmp_path / "s.npz"), np.load(tmp_path / "t.npz")
    assert s["samples"].shape == (6, 8, 8, 1) and s["samples"].dtype == np.uint8
    assert os.path.exists(tmp_path / "s.png")
    np.testing.assert_array_equal(s["samples"][3:6], t["samples"])  # smoke nfe is 3 too


def test_tfds_mock_end_to_end(tmp_path, capsys):
    with tfds.testing.mock_data(num_examples=16):
        rc, out, err = run_main(capsys, "--config", "quickstart:smoke", "--workdir", str(tmp_path / "m"),
                                "--config.data.source=tfds:mnist", "--config.data.shape=(28, 28, 1)",
                                "--config.data.num_classes=10", "--config.sample_every=0")
    assert rc == 0, err
    assert os.path.exists(tmp_path / "m" / "ckpt" / "main" / "4")


@pytest.mark.parametrize("argv,msg", [
    (["--config", "nope"], "unknown config 'nope'; valid: "),
    (["--config", "quickstart:fast"], "unknown preset 'fast'"),
    (["--config", "quickstart", "--config.optim.net.lrr=1"], "unknown config key 'optim.net.lrr'; valid keys in optim.net: b1, b2"),
    (["--config", "quickstart", "--config.batch_size=big"], "--config.batch_size expects int"),
    (["--config", "quickstart", "--config.batch_size=7"], "not divisible by the 4 devices"),
    (["--config", "quickstart", "--config.data.source=npz:/missing.npz"], "dataset file not found"),
    (["--config", "cd_cifar10:smoke", "--config.teacher.workdir=/missing"], "teacher workdir '/missing' has no config.json"),
])
def test_bad_input_one_clear_line(tmp_path, capsys, argv, msg):
    rc, out, err = run_main(capsys, *argv, "--workdir", str(tmp_path / "w"))
    assert rc == 2
    assert msg in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "w" / "ckpt")


def test_dry_run_and_overrides(capsys):
    rc, out, _ = run_main(capsys, "--config", "edm_cifar10", "--dry_run", "--config.optim.net.lr=3e-4",
                          "--config.data.flip=true", "--config.net.channel_mult=(1,2)")
    cfg = json.loads(out)
    assert rc == 0 and cfg["optim"]["net"]["lr"] == 3e-4 and cfg["data"]["flip"] is True
    assert cfg["net"]["channel_mult"] == [1, 2] and cfg["batch_size"] == 512


def test_refuses_workdir_of_another_config(tmp_path, capsys):
    wd = str(tmp_path / "w")
    os.makedirs(wd)
    with open(os.path.join(wd, "config.json"), "w") as f:
        json.dump({"method": "fm", "seed": 0}, f)
    rc, _, err = run_main(capsys, "--config", "quickstart:smoke", "--workdir", wd)
    assert rc == 2 and "different config" in err and "--force" in err
    assert json.load(open(os.path.join(wd, "config.json")))["method"] == "fm"  # untouched


def test_sigterm_saves_and_exits_zero(tmp_path):
    wd = str(tmp_path / "p")
    cmd = [sys.executable, "-m", "genmod.launch", "--config", "edm_toy", "--workdir", wd,
           "--config.total_steps=100000", "--config.log_every=50", "--config.sample_every=0"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # wait until it is really training
        lines.append(line)
        if "step 100/" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "preempted at step" in rest
    step = int(rest.split("preempted at step ")[1].split(":")[0])
    assert 100 <= step < 100000
    assert os.path.isdir(os.path.join(wd, "ckpt", "main", str(step)))
