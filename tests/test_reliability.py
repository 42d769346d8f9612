"""Kills, NaNs, corrupt checkpoints and failing disks never lose work."""
import errno
import glob
import json
import os
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from genmod import checkpoint, train
from tests import helpers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
FAST = dict(batch_size=32, log_every=1, sample_every=0, num_preview=0)
quiet = lambda *_: None  # noqa: E731


def nan_config(**kw):
    c = helpers.config("edm_toy", method="tests.nan_method", **{**FAST, **kw})
    return c


def test_nan_steps_are_skipped_and_counted(tmp_path):
    c = nan_config(total_steps=5, ckpt_every=100)
    with c.unlocked():
        c.nan_steps = (1, 3)
    assert train.train(c, str(tmp_path), log=quiet) == "done"
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert sum(r["net/skipped"] for r in rows) == 2
    assert [r["step"] for r in rows if r["net/skipped"]] == [2, 4]
    s = helpers.raw_state(tmp_path)
    assert int(s["opt"]["net"]["inner_state"][0]["count"]) == 3  # 5 steps, 2 skipped
    assert all(np.isfinite(x).all() for x in __import__("jax").tree.leaves(s["params"]))


def test_consecutive_nans_stop_with_clear_message_keeping_good_checkpoint(tmp_path):
    c = nan_config(total_steps=50, ckpt_every=2, max_bad_steps=3)
    with c.unlocked():
        c.nan_steps = tuple(range(4, 50))
    with pytest.raises(FloatingPointError, match=r"3 consecutive non-finite steps .* Last good checkpoint: step 6"):
        train.train(c, str(tmp_path), log=quiet)
    steps = checkpoint.Checkpoints(str(tmp_path / "ckpt" / "main")).all_steps()
    assert max(steps) == 6  # step 7 reported the streak; nothing saved after
    good = helpers.raw_state(tmp_path, step=4)["params"]
    helpers.assert_trees_equal(helpers.raw_state(tmp_path, step=6)["params"], good)  # skipped steps: unchanged


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, capsys):
    c4 = helpers.config("edm_toy", total_steps=4, ckpt_every=2, **FAST)
    c6 = helpers.config("edm_toy", total_steps=6, ckpt_every=2, **FAST)
    train.train(c6, str(tmp_path / "ref"), log=quiet)
    train.train(c4, str(tmp_path / "run"), log=quiet)
    for f in glob.glob(str(tmp_path / "run" / "ckpt" / "main" / "4" / "state" / "**" / "*"), recursive=True):
        if os.path.isfile(f):
            with open(f, "r+b") as fh:
                fh.truncate(max(os.path.getsize(f) // 3, 1))
    log = []
    assert train.train(c6, str(tmp_path / "run"), log=log.append) == "done"
    assert any("checkpoint" in m and ("unreadable" in m or "integrity" in m) for m in log), log
    assert "[main] resuming from step 2" in log
    assert glob.glob(str(tmp_path / "run" / "ckpt" / "main" / "corrupt_4_*"))  # kept aside, not deleted
    helpers.assert_trees_equal(helpers.raw_state(tmp_path / "ref"), helpers.raw_state(tmp_path / "run"))


def test_disk_full_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    c = helpers.config("edm_toy", total_steps=6, ckpt_every=2, **FAST)
    real = ocp.JsonCheckpointHandler.async_save

    def failing(self, directory, *a, args=None, **kw):
        if args is not None and getattr(args, "item", {}).get("step") == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, directory, *a, args=args, **kw)

    monkeypatch.setattr(ocp.JsonCheckpointHandler, "async_save", failing)
    with pytest.raises(OSError, match="No space left"):
        train.train(c, str(tmp_path / "run"), log=quiet)
    monkeypatch.undo()
    ck = checkpoint.Checkpoints(str(tmp_path / "run" / "ckpt" / "main"))
    assert ck.all_steps() == [2]
    ck.close()
    assert train.train(c, str(tmp_path / "run"), log=quiet) == "done"  # resumes from 2
    train.train(c, str(tmp_path / "ref"), log=quiet)
    helpers.assert_trees_equal(helpers.raw_state(tmp_path / "ref"), helpers.raw_state(tmp_path / "run"))


@pytest.mark.slow
def test_kill_9_then_resume_is_bit_identical(tmp_path):
    import kill_resume

    ref_wd = str(tmp_path / "ref")
    _, duration = kill_resume.run(ref_wd)
    ref = kill_resume.final_state(ref_wd)
    for seed in (0, 1):
        same, events = kill_resume.trial(ref, seed, str(tmp_path), duration)
        assert same, (seed, events)


# -- round 2 (issue #18): no setting or second process may destroy a run; bad input is one line --
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402

import jax  # noqa: E402

from genmod import config_lib, evaluate, launch, lock, sample, writers  # noqa: E402

TOY = ["--config", "edm_toy", "--config.total_steps=4", "--config.ckpt_every=2", "--config.batch_size=32",
       "--config.log_every=1", "--config.sample_every=0", "--config.num_preview=0"]


def snapshot(wd):
    """{relative path: bytes} of every file under ``wd`` (what "untouched" means)."""
    out = {}
    for root, _, files in os.walk(wd):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, wd)] = fh.read()
    return out


def one_line_error(capsys, rc):
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, (rc, err)
    return err


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A finished edm_toy run made by the launch entry point: checkpoints at steps 2 and 4."""
    wd = str(tmp_path_factory.mktemp("toy") / "run")
    assert launch.main([*TOY, "--workdir", wd]) == 0
    return wd


@pytest.fixture
def run_copy(toy_run, tmp_path):
    wd = str(tmp_path / "run")
    shutil.copytree(toy_run, wd)
    return wd


def test_keep_zero_is_refused_and_deletes_nothing(run_copy, capsys):
    before = snapshot(run_copy)
    capsys.readouterr()
    err = one_line_error(capsys, launch.main([*TOY, "--workdir", run_copy, "--config.keep=0",
                                              "--config.total_steps=6"]))
    assert "config.keep must be an integer >= 1" in err
    assert snapshot(run_copy) == before


def test_force_with_changed_network_is_a_config_error_nothing_moved(run_copy, capsys):
    before = snapshot(run_copy)
    capsys.readouterr()
    err = one_line_error(capsys, launch.main([*TOY, "--workdir", run_copy, "--force",
                                              "--config.net.hidden=(64, 64, 64)", "--config.total_steps=6"]))
    assert "was made by a different config" in err and "(256,)" in err and "(64,)" in err
    assert snapshot(run_copy) == before  # config.json, checkpoints, lock: byte-identical, nothing renamed
    # and the unchanged config still resumes from the newest checkpoint
    assert launch.main([*TOY, "--workdir", run_copy, "--config.total_steps=6"]) == 0
    assert "resuming from step 4" in capsys.readouterr().out


def _scribble(wd, step, n=4096):
    """Overwrite ``n`` random bytes in the middle of a checkpoint's largest data file (same size)."""
    files = [f for f in glob.glob(os.path.join(wd, "ckpt", "main", str(step), "state", "**", "*"), recursive=True)
             if os.path.isfile(f)]
    big = max(files, key=os.path.getsize)
    size = os.path.getsize(big)
    with open(big, "r+b") as fh:
        fh.seek(max(0, size // 2 - n // 2))
        fh.write(np.random.default_rng(0).bytes(min(n, size)))


def test_checkpoint_with_scribbled_bytes_is_set_aside_with_a_warning(run_copy, tmp_path):
    assert os.path.exists(os.path.join(run_copy, "ckpt", "main", "4", checkpoint.INTEGRITY))
    _scribble(run_copy, 4)
    c6 = helpers.config("edm_toy", total_steps=6, ckpt_every=2, **FAST)
    log = []
    assert train.train(c6, run_copy, log=log.append) == "done"
    assert any("checkpoint" in m and "/4 failed its integrity check" in m and "using step 2" in m for m in log), log
    assert "[main] resuming from step 2" in log
    assert glob.glob(os.path.join(run_copy, "ckpt", "main", "corrupt_4_*"))  # kept aside, not deleted
    train.train(c6, str(tmp_path / "ref"), log=quiet)
    helpers.assert_trees_equal(helpers.raw_state(tmp_path / "ref"), helpers.raw_state(run_copy))


def _replace_with_nan(wd, step):
    """Rewrite checkpoint ``step`` with NaN parameters (as a save that bypassed every guard)."""
    c = config_lib.from_json(os.path.join(wd, "config.json"))
    mesh = train.sharding.make_mesh({"data": -1})
    run = next(train.iter_stages(c, wd, mesh, train._spec(c), async_save=False))
    state, meta = run.ckpt.restore(run.abstract, step)
    state = state.replace(params=jax.tree.map(lambda x: x * np.nan, state.params),
                          ema=jax.tree.map(lambda x: x * np.nan, state.ema))
    shutil.rmtree(os.path.join(wd, "ckpt", "main", str(step)))
    run.ckpt.mngr.reload()
    run.ckpt.mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)))
    run.ckpt.mngr.wait_until_finished()
    run.ckpt.mngr.close()


def test_non_finite_checkpoint_falls_back_and_sample_never_writes_nan(run_copy, tmp_path, capsys):
    _replace_with_nan(run_copy, 4)
    out = str(tmp_path / "s.npz")
    capsys.readouterr()
    # sampling an explicit NaN checkpoint: one line, exit 2, nothing written
    err = one_line_error(capsys, sample.main(["--workdir", run_copy, "--step", "4", "--num", "4", "--out", out]))
    assert "/4 restores non-finite values" in err and not os.path.exists(out)
    # the latest: the previous good one, with a warning naming the bad one
    assert sample.main(["--workdir", run_copy, "--num", "4", "--out", out]) == 0
    assert "/4 restores non-finite values; using step 2" in capsys.readouterr().err
    assert int(np.load(out)["step"]) == 2 and np.isfinite(np.load(out)["samples"]).all()
    # training: set aside, resumed from step 2
    log = []
    assert train.train(helpers.config("edm_toy", total_steps=6, ckpt_every=2, **FAST), run_copy, log=log.append) == "done"
    assert "[main] resuming from step 2" in log and glob.glob(os.path.join(run_copy, "ckpt", "main", "corrupt_4_*"))


def test_sample_refuses_non_finite_samples(run_copy, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sample.Sampler, "__call__", lambda self, seeds: np.full((len(seeds), 2), np.nan, np.float32))
    out = str(tmp_path / "s.npz")
    capsys.readouterr()
    err = one_line_error(capsys, sample.main(["--workdir", run_copy, "--num", "4", "--out", out]))
    assert "non-finite" in err and not os.path.exists(out) and not glob.glob(str(tmp_path / "s*"))


def test_no_usable_checkpoint_never_restarts_from_zero(run_copy):
    for step in (2, 4):
        _scribble(run_copy, step)
    c = helpers.config("edm_toy", total_steps=6, ckpt_every=2, **FAST)
    before = snapshot(run_copy)
    for _ in range(2):  # and again: the first failure changed nothing, so the second is the same
        with pytest.raises(checkpoint.CheckpointError, match="no usable checkpoint .*nothing was moved"):
            train.train(c, run_copy, log=quiet)
    after = snapshot(run_copy)
    assert {k: v for k, v in after.items() if not k.startswith("tb/")} == \
        {k: v for k, v in before.items() if not k.startswith("tb/")}
    # a workdir whose checkpoints were all set aside (older genmod) is not a fresh start either
    for step in (2, 4):
        os.replace(os.path.join(run_copy, "ckpt", "main", str(step)), os.path.join(run_copy, "ckpt", "main", f"corrupt_{step}_1"))
    with pytest.raises(checkpoint.CheckpointError, match="only ones set aside"):
        train.train(c, run_copy, log=quiet)


def test_second_launch_on_a_locked_workdir_exits_naming_the_holder(run_copy, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with open(os.path.join(run_copy, "lock"), "w") as f:
            json.dump({"host": socket.gethostname(), "pid": holder.pid, "start": 1.7e9}, f)
        before = snapshot(run_copy)
        capsys.readouterr()
        err = one_line_error(capsys, launch.main([*TOY, "--workdir", run_copy, "--config.total_steps=6"]))
        assert f"is in use by pid {holder.pid} on host {socket.gethostname()}" in err
        assert snapshot(run_copy) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over; released at the end
    assert launch.main([*TOY, "--workdir", run_copy, "--config.total_steps=6"]) == 0
    assert not os.path.exists(os.path.join(run_copy, "lock"))


def test_workdir_lock_is_exclusive_within_and_across_processes(tmp_path):
    with lock.WorkdirLock(str(tmp_path)):
        info = json.load(open(tmp_path / "lock"))
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(lock.LockError, match=f"in use by pid {os.getpid()}"):
            lock.WorkdirLock(str(tmp_path)).acquire()
        code = ("import sys; sys.path.insert(0, %r); from genmod import lock\n"
                "try:\n    lock.WorkdirLock(%r).acquire()\nexcept lock.LockError as e:\n    print(e); sys.exit(3)"
                % (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), str(tmp_path)))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode == 3 and f"pid {os.getpid()}" in r.stdout, r
    assert not os.path.exists(tmp_path / "lock")
    # another host's lock: held until it is older than GENMOD_LOCK_STALE_S
    with open(tmp_path / "lock", "w") as f:
        json.dump({"host": "elsewhere", "pid": 1, "start": 0}, f)
    with pytest.raises(lock.LockError, match="on host elsewhere"):
        lock.WorkdirLock(str(tmp_path)).acquire()
    os.utime(tmp_path / "lock", (0, 0))
    lock.WorkdirLock(str(tmp_path)).acquire().release()


def test_fid_reference_with_nan_sigma_is_a_clear_error(tmp_path):
    mu, sigma = np.zeros(4), np.eye(4)
    sigma[1, 2] = np.nan
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma, count=10)
    os.makedirs(tmp_path / "wd")
    with pytest.raises(SystemExit, match=r"sigma holds 1 non-finite values"):
        evaluate.main(["fid", "--workdir", str(tmp_path / "wd"), "--ref", str(tmp_path / "ref.npz"), "--num", "4"])
    from genmod.eval import fid

    with pytest.raises(ValueError, match="sigma2 holds 1 non-finite"):  # and the library, before scipy's sqrtm
        fid.frechet_distance(mu, np.eye(4), mu, sigma)


@pytest.mark.parametrize("argv,msg", [
    (["--nfe", "-3"], "--nfe must be >= 1, got -3"),
    (["--nfe", "0"], "--nfe must be >= 1, got 0"),
    (["--num", "0"], "--num must be >= 1"),
    (["--num", "-5"], "--num must be >= 1"),
    (["--seeds", "5-1"], "descending"),
    (["--seeds", "-3"], "bad --seeds"),
    (["--batch", "0"], "--batch must be >= 1"),
    (["--num", str(10**9 * 4)], "more than 2147483648 samples"),
    (["--num", str(2**31)], "GiB for the samples"),
    (["--out", "/dev/null/x.npz"], "cannot write --out"),
])
def test_sample_bad_arguments_fail_before_sampling(toy_run, tmp_path, capsys, monkeypatch, argv, msg):
    def no_sampling(*a, **k):
        raise AssertionError("sampled despite a bad argument")

    monkeypatch.setattr(sample, "Sampler", no_sampling)
    args = ["--workdir", toy_run, "--out", str(tmp_path / "s.npz")]
    if "--num" in argv or "--out" in argv:
        args = ["--workdir", toy_run, *([] if "--out" in argv else ["--out", str(tmp_path / "s.npz")])]
    assert msg in one_line_error(capsys, sample.main([*args, *argv]))


def _launch_err(capsys, *argv):
    capsys.readouterr()
    return one_line_error(capsys, launch.main(list(argv)))


@pytest.mark.parametrize("override,msg", [
    ("batch_size=0", "config.batch_size must be an integer >= 1, got 0"),
    ("batch_size=-8", "config.batch_size must be an integer >= 1, got -8"),
    ("ckpt_every=0", "config.ckpt_every must be an integer >= 1"),
    ("log_every=0", "config.log_every must be an integer >= 1"),
    ("seed=-1", "config.seed must be an integer >= 0"),
    ("mesh.data=3", "not divisible by the 3 devices"),
    ("mesh.data=8", "config.mesh {'data': 8, 'fsdp': 1} needs 8 devices, there are 4"),
    ("mesh.fsdp=-2", "config.mesh"),
    ("optim=3", "--config.optim is a group"),
    ("net.hidden=(-4, 256)", "config.net.hidden must hold positive integers"),
    ("total_steps=0", "config.total_steps must be an integer >= 1"),
    ("total_steps=-5", "config.total_steps must be an integer >= 1"),
    ("optim.net.lr=-1.0", "config.optim.net.lr must be a finite number >= 0"),
    ("sample.nfe=0", "config.sample.nfe must be an integer >= 1"),
])
def test_bad_config_values_are_one_line_before_anything(tmp_path, capsys, override, msg):
    wd = str(tmp_path / "w")
    err = _launch_err(capsys, "--config", "edm_toy", "--workdir", wd, f"--config.{override}")
    assert msg in err
    assert not os.path.exists(wd)


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]"])
def test_damaged_config_json_is_one_line_and_kept(tmp_path, capsys, content):
    wd = tmp_path / "w"
    os.makedirs(wd)
    (wd / "config.json").write_text(content)
    for force in ([], ["--force"]):
        err = _launch_err(capsys, *TOY, "--workdir", str(wd), *force)
        assert "config.json" in err and "not a genmod config" in err
    err = one_line_error(capsys, sample.main(["--workdir", str(wd), "--out", str(tmp_path / "s.npz")]))
    assert "not a genmod config" in err
    assert (wd / "config.json").read_text() == content and os.listdir(wd) == ["config.json"]


def _digits_npz(path, n_labels=None, label_shift=0):
    from sklearn.datasets import load_digits

    d = load_digits()
    img = np.round(d.images[:40] * (255 / 16)).astype(np.uint8)
    lab = (d.target[:40] + label_shift)[:n_labels]
    np.savez(path, x_train=img, y_train=lab)
    return f"npz:{path}"


@pytest.mark.parametrize("kw,msg", [
    (dict(n_labels=20), "arrays of different lengths (image 40, label 20)"),
    (dict(label_shift=5), "labels span 5..14, outside 0..9"),
])
def test_bad_labels_are_one_line_before_compiling(tmp_path, capsys, kw, msg):
    src = _digits_npz(tmp_path / "d.npz", **kw)
    err = _launch_err(capsys, "--config", "quickstart:smoke", "--workdir", str(tmp_path / "w"),
                      f"--config.data.source={src}", "--config.data.num_classes=10")
    assert msg in err
    assert not os.path.exists(tmp_path / "w" / "ckpt")


def test_dataset_smaller_than_a_batch_warns(tmp_path):
    from genmod import data

    c = helpers.config("quickstart:smoke")
    _digits_npz(tmp_path / "d.npz")
    np.savez(tmp_path / "one.npz", x_train=np.load(tmp_path / "d.npz")["x_train"][:1])
    with c.unlocked():
        c.data.source = f"npz:{tmp_path / 'one.npz'}"
    log = []
    train.check_data(data.Pipeline(c.data, c.batch_size), c, log.append)
    assert log == [f"warning: npz:{tmp_path / 'one.npz'} has 1 rows, fewer than batch_size 8: every batch "
                   f"repeats rows (epochs wrap inside a batch)"]


def test_config_names_cannot_reach_outside_the_packaged_configs(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "ran"
    evil = f"open({str(marker)!r}, 'w').write('x')\nfrom configs.edm_toy import get_config\n"
    (tmp_path / "evil.py").write_text(evil)
    os.makedirs(tmp_path / "cwd" / "configs")
    (tmp_path / "cwd" / "configs" / "edm_toy.py").write_text(evil)
    rel = os.path.relpath(tmp_path / "evil", os.getcwd())
    err = _launch_err(capsys, "--config", rel, "--dry_run")
    assert "bad config name" in err and not marker.exists()
    monkeypatch.chdir(tmp_path / "cwd")  # a configs/edm_toy.py here does not shadow the packaged one
    assert launch.main(["--config", "edm_toy", "--dry_run"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["source"] == "gmm:ring" and not marker.exists()
    assert "edm_toy" in config_lib.available()
    # an explicit .py path is the user's choice and runs
    monkeypatch.syspath_prepend(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert launch.main(["--config", str(tmp_path / "evil.py"), "--dry_run"]) == 0 and marker.exists()


@pytest.mark.parametrize("key,value", [("method", "evilmod_x.method"), ("net.arch", "evilmod_x:build")])
def test_workdir_config_json_cannot_import_modules_the_user_did_not_name(tmp_path, capsys, monkeypatch, key, value):
    marker = tmp_path / "ran"
    (tmp_path / "evilmod_x.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(config_lib, "TRUSTED_MODULES", set())
    wd = tmp_path / "w"
    os.makedirs(wd)
    c = json.loads(helpers.config("edm_toy").to_json())
    if key == "method":
        c["method"] = value
    else:
        c["net"]["arch"] = value
    (wd / "config.json").write_text(json.dumps(c))
    err = one_line_error(capsys, sample.main(["--workdir", str(wd), "--out", str(tmp_path / "s.npz")]))
    assert "'evilmod_x" in err and "--allow_module evilmod_x" in err and not marker.exists()
    with pytest.raises(config_lib.ConfigError, match="outside genmod"):
        train.load_workdir(str(wd))
    assert not marker.exists()


def test_metrics_jsonl_has_each_step_once_after_a_kill_and_resume(run_copy):
    rows = [json.loads(line) for line in open(os.path.join(run_copy, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    # a kill after step 4 was logged but before its checkpoint committed: only step 2 remains
    shutil.rmtree(os.path.join(run_copy, "ckpt", "main", "4"))
    c = config_lib.from_json(os.path.join(run_copy, "config.json"))
    with c.unlocked():
        c.total_steps = 6
    log = []
    assert train.train(c, run_copy, log=log.append) == "done"
    assert "[main] resuming from step 2" in log
    rows = [json.loads(line) for line in open(os.path.join(run_copy, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_eta_includes_checkpoint_time(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(writers.time, "perf_counter", lambda: now[0])
    p = writers.Progress(0, 100)
    p.tick(1)  # clock starts after the first (compiling) step
    now[0] = 10.0
    p.pause(5.0)  # a 5 s checkpoint inside 10 s
    r = p.report(11)
    assert r["steps_per_sec"] == pytest.approx(2.0)  # training rate, pauses excluded
    assert r["wall_steps_per_sec"] == pytest.approx(1.0)
    assert r["eta_sec"] == pytest.approx(89.0)  # 89 steps at the wall rate, checkpoints included
