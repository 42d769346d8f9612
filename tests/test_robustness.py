"""Issue #16 regression guard: a few-step method's own toy config, with only the data source
changed, on a mixture it was not tuned on: every mode (the 2% one included) and little mass
between modes. The full study is benchmarks/robustness.py (docs/RESULTS.md)."""
import numpy as np
import pytest

from genmod import data, sample, toy, train
from tests import helpers

# hundreds of steps each: XLA's optimisations pay for their compile (tests/conftest.py)
pytestmark = pytest.mark.optimized
QUIET = dict(log_every=10**6, sample_every=0, num_preview=0, mesh={"data": 1})


def _modes(tmp_path, config, mixture, **kw):
    c = helpers.config(config, data__source=f"gmm:{mixture}", **QUIET, **kw)
    with c.unlocked():
        c.ckpt_every = c.total_steps
    train.train(c, str(tmp_path), log=lambda *_: None)
    mix = data.mixture_of(f"gmm:{mixture}")
    x = sample.Sampler(str(tmp_path))(np.arange(4000))
    rec, off = toy.mode_stats(mix, x)
    return rec, off, toy.energy_distance(x, mix.sample_np(12345, 4000)[0], max_points=4000)


@pytest.mark.parametrize("config, steps", [
    ("dmd2_toy", 500),  # 500 of its 1,500 steps; measured: 3/3 modes, off-mode 2.2%, energy 0.0013
    pytest.param("fdistill_toy", 500, marks=pytest.mark.slow),  # JS; measured: 3/3, 2.5%, 0.0014
    pytest.param("disback_toy", 300 + 40 + 500, marks=pytest.mark.slow),  # stage 2 of 500 steps; 3/3, 2.5%, 0.0014
])
def test_distribution_matching_places_the_rare_mode_within_a_third_of_its_run(tmp_path, config, steps):
    # the guard per method: gmm:random:1 (three modes, one of 2%), a third of the generator's run
    # (at 300 of DMD2's steps the 2% mode is not there yet)
    rec, off, e = _modes(tmp_path, config, "random:1", total_steps=steps)
    print(f"{config}, {steps} steps on random:1: modes {int(sum(rec))}/{len(rec)}, off-mode {off:.3f}, energy {e:.4f}")
    assert all(rec) and off <= 0.05, (rec, off)


def test_cd_toy_keeps_every_mode_of_an_unseen_mixture_within_a_tenth_of_its_run(tmp_path):
    # the fast guard for CD: 400 of cd_toy's 4,000 steps on gmm:random:1 (three modes, one of 2%;
    # the cool-down rescales with total_steps); measured: 3/3 modes, off-mode 2.4%, energy 0.00043,
    # ~25 s (800 steps: 1.8%). Song et al.'s one-level pairs (cd_span 1, cd_substeps 1) fail it:
    # 2/3 modes, 17% off-mode
    rec, off, e = _modes(tmp_path, "cd_toy", "random:1", total_steps=400)
    print(f"cd_toy, 400 steps on random:1: modes {int(sum(rec))}/{len(rec)}, off-mode {off:.3f}, energy {e:.4f}")
    assert all(rec) and off <= 0.05, (rec, off)


def test_cm_toy_keeps_every_mode_of_an_unseen_mixture_within_a_tenth_of_its_run(tmp_path):
    # the fast guard for consistency training: 500 of cm_toy's 5,000 steps on gmm:random:1 (three
    # modes, one of 2%); measured: 3/3 modes (the 2% one at 0.66 of its mass, 0.5 needed), off-mode
    # 2.7%, energy 0.0004. At 400 steps the rare mode is at 0.48 (0.56 with the shorter EMA before
    # session 25: the EMA lags the raw weights by about a tenth of the run).
    # The paper's iCT recipe (cm_toy:ict, 500 of its steps) fails it: 2/3 modes, 6.6% off-mode
    rec, off, e = _modes(tmp_path, "cm_toy", "random:1", total_steps=500)
    print(f"cm_toy, 500 steps on random:1: modes {int(sum(rec))}/{len(rec)}, off-mode {off:.3f}, energy {e:.4f}")
    assert all(rec) and off <= 0.05, (rec, off)


def test_sct_keeps_every_mode_of_an_unseen_mixture_within_a_tenth_of_its_run(tmp_path):
    # the fast guard for sCM (issue #21): 1,200 of scm_toy's 12,000 steps on gmm:random:1, the
    # tangent warm-up scaled with the run (1,000 of 12,000 -> 100); measured: 3/3 modes, off-mode
    # 3.2%, energy 0.0014 (600 steps: the 2% mode is not there yet). The paper's one-sample
    # velocity (scm_toy:paper) fails it: 2/3 modes, energy 0.024
    rec, off, e = _modes(tmp_path, "scm_toy", "random:1", total_steps=1200, scm__warmup_steps=100)
    print(f"scm_toy, 1,200 steps on random:1: modes {int(sum(rec))}/{len(rec)}, off-mode {off:.3f}, energy {e:.4f}")
    assert all(rec) and off <= 0.05, (rec, off)


@pytest.mark.slow
def test_dmd2_toy_keeps_the_rare_mode_of_an_unseen_mixture(tmp_path):
    # gmm:random:1: three modes, one of 2% mass. Before issue #16's fix (TTUR 5, no regression
    # term) the 2% mode was lost (2/3 modes); measured now: 3/3, off-mode 1.2%, energy 0.0013
    rec, off, e = _modes(tmp_path, "dmd2_toy", "random:1")
    print(f"dmd2_toy on random:1: modes {int(sum(rec))}/{len(rec)}, off-mode {off:.3f}, energy {e:.4f}")
    assert all(rec) and off <= 0.05, (rec, off)
