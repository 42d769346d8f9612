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
    assert any("checkpoint" in m and "unreadable" in m for m in log), log
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
