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
    # the start-up banner, then a line before and after the first (compiling) step
    lines = out.splitlines()
    assert lines[:5] == [f"workdir {wd} (new run)", "devices: 4 x cpu (cpu), 1 process; mesh data=4 x fsdp=1",
                         "data: digits (train): 1,797 images of 8x8x1; batch 8, method edm",
                         "[main] parameters: net 41.2K",
                         "[main] compiling train (the first step includes compilation) ..."], out
    assert lines[5].startswith("[main] step 1 done, compile included: "), out
    for f in ("config.json", "metrics.jsonl", "samples/main_00000004.png", "ckpt/main/4"):
        assert os.path.exists(os.path.join(wd, f)), f
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(os.path.join(wd, "tb")))
    rows = [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]
    assert {"train/loss", "net/grad_norm", "net/lr", "steps_per_sec", "img_per_sec"} <= set(rows[-1])
    # the same command again resumes: nothing left to do
    rc, out, _ = run_main(capsys, "--config", "quickstart:smoke", "--workdir", wd)
    assert rc == 0 and "complete at step 4" in out
    # sampling: files, dtype, and each image determined by its seed alone
    capsys.readouterr()
    assert sample.main(["--workdir", wd, "--num", "6", "--out", str(tmp_path / "s.npz"), "--batch", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"sampling 6 from {wd} (step 4): NFE 3, network evaluations (Heun: 2 per step, the last step Euler)",
                   f"wrote {tmp_path / 's.npz'}: 6 samples (step 4, NFE 3)",
                   f"wrote {tmp_path / 's.png'}: grid of the first 6 samples"]
    # Heun spends 2N - 1 evaluations: --nfe 4 runs 3, and says so
    assert sample.main(["--workdir", wd, "--seeds", "3-5", "--out", str(tmp_path / "t.npz"), "--nfe", "4"]) == 0
    out = capsys.readouterr().out
    assert "NFE 3 (--nfe 4 asked)" in out and f"wrote {tmp_path / 't.npz'}: 3 samples (step 4, NFE 3)" in out
    s, t = np.load(tmp_path / "s.npz"), np.load(tmp_path / "t.npz")
    assert s["samples"].shape == (6, 8, 8, 1) and s["samples"].dtype == np.uint8 and int(t["nfe"]) == 3
    assert os.path.exists(tmp_path / "s.png") and os.path.exists(tmp_path / "t.png")
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
    (["--config", "quickstrat"], "unknown config 'quickstrat' (did you mean 'quickstart'?); valid: "),
    (["--config", "quickstart:fast"], "unknown preset 'fast'; valid: mnist, smoke"),
    (["--config", "quickstart:smok"], "unknown preset 'smok' (did you mean 'smoke'?); valid: mnist, smoke"),
    (["--config", "quickstart", "--config.optim.net.lrr=1"],
     "unknown config key 'optim.net.lrr' (did you mean 'optim.net.lr'?); valid keys in optim.net: b1, b2"),
    (["--config", "quickstart", "--config.optm.net.lr=1"],
     "unknown config key 'optm.net.lr' (did you mean 'optim.net.lr'?); valid keys in config: batch_size"),
    (["--config", "quickstart", "--config.zzz=1"], "unknown config key 'zzz'; valid keys in config: "),
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
    rc, out, err = run_main(capsys, "--config", "edm_cifar10", "--dry_run", "--config.optim.net.lr=3e-4",
                            "--config.data.flip=true", "--config.net.channel_mult=(1,2)",
                            "--config.data.source=synthetic:32x32x3")
    cfg = json.loads(out)
    assert rc == 0 and cfg["optim"]["net"]["lr"] == 3e-4 and cfg["data"]["flip"] is True
    assert cfg["net"]["channel_mult"] == [1, 2] and cfg["batch_size"] == 512
    assert "[main] parameters: net 25.5M" in err and err.strip().endswith("all checks passed, nothing written")


def test_smoke_gets_its_own_workdir_and_dry_run_writes_nothing(tmp_path, capsys, monkeypatch):
    assert launch.default_workdir("quickstart") == os.path.join("checkpoints", "quickstart")
    assert launch.default_workdir("quickstart:mnist") == os.path.join("checkpoints", "quickstart")
    assert launch.default_workdir("quickstart:smoke") == os.path.join("checkpoints", "quickstart_smoke")
    assert launch.default_workdir("quickstart:smoke,mnist") == os.path.join("checkpoints", "quickstart_mnist_smoke")
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_main(capsys, "--config", "quickstart:smoke", "--dry_run")
    assert rc == 0 and json.loads(out)["total_steps"] == 4
    assert err.splitlines() == [f"workdir {tmp_path / 'checkpoints' / 'quickstart_smoke'} (new run)",
                                "devices: 4 x cpu (cpu), 1 process; mesh data=4 x fsdp=1",
                                "data: digits (train): 1,797 images of 8x8x1; batch 8, method edm",
                                "[main] parameters: net 41.2K",
                                "dry run: all checks passed, nothing written"]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("argv,msg", [
    (["--config", "quickstart", "--config.data.source=npz:/missing.npz"], "dataset file not found"),
    (["--config", "edm_cifar10", "--config.data.source=tfds:cifar10"], "tfds dataset 'cifar10' split 'train' unavailable"),
    (["--config", "quickstart", "--config.data.shape=(16,16,1)"], "does not match the model's 16x16x1"),
    (["--config", "cd_cifar10:smoke", "--config.teacher.workdir=/missing"], "teacher workdir '/missing' has no config.json"),
])
def test_dry_run_opens_the_data_and_the_teacher(tmp_path, capsys, argv, msg, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    rc, out, err = run_main(capsys, *argv, "--dry_run", "--workdir", str(tmp_path / "w"))
    assert rc == 2 and json.loads(out)  # the config is printed, then the check fails with one line
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and msg in errors[0], err
    assert not os.path.exists(tmp_path / "w")


def test_list_configs_describes_each(capsys):
    from genmod import config_lib

    rc, out, _ = run_main(capsys, "--list_configs")
    lines = out.splitlines()
    assert rc == 0 and [line.split()[0] for line in lines] == config_lib.available()
    w = max(map(len, config_lib.available()))
    assert f"{'quickstart':<{w}}  Quickstart: EDM on the 1,797 8x8 digits that ship with scikit-learn (no download)." in lines
    assert f"{'cd_cifar10':<{w}}  Consistency distillation (Song et al. 2023) of an EDM NCSN++ teacher on CIFAR-10." in lines
    assert all(len(line.split(None, 1)) == 2 and len(line) <= w + 2 + 110 for line in lines)


@pytest.mark.parametrize("existing", [False, True])
def test_run_failing_before_its_first_step_leaves_no_files(tmp_path, capsys, monkeypatch, existing):
    """config.json, metrics.jsonl, tb/ and ckpt/ are written before the first step; a failure
    there (here: the first batch) removes them all, and a workdir the run created itself."""
    from genmod import data

    def boom(self, step):
        raise RuntimeError("first batch failed")

    monkeypatch.setattr(data.Prefetch, "get", boom)
    wd = tmp_path / "new" / "wd"
    if existing:
        os.makedirs(wd)
        (wd / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="first batch failed"):
        launch.main(["--config", "quickstart:smoke", "--workdir", str(wd)])
    if existing:
        assert os.listdir(wd) == ["notes.txt"] and (wd / "notes.txt").read_text() == "mine"
    else:
        assert os.listdir(tmp_path) == []


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


def test_compile_notice_prints_while_compiling():
    import time

    from genmod.train import CompileNotice

    log = []
    c = CompileNotice("main", ["critic", "gen"], log.append, every=0.05)
    time.sleep(0.3)
    c.done(1)
    n = len(log)
    time.sleep(0.15)
    assert log[0] == "[main] compiling critic, gen (the first step includes compilation) ..."
    assert any(x.startswith("[main] still compiling (") for x in log[1:-1])
    assert log[-1].startswith("[main] step 1 done, compile included: ") and len(log) == n  # and then quiet
