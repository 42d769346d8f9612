"""Mixtures from anywhere (gmm:PATH.json, gmm:random:SEED) with their exact teacher, and the
robustness benchmark's measures (mode recall, off-mode mass, the Heun-35 reference)."""
import json

import jax
import ml_collections
import numpy as np
import pytest

from genmod import data, edm, teacher, toy


@pytest.mark.parametrize("seed", range(12))
def test_random_family_is_seeded_and_in_range(seed):
    m = data.mixture_of(f"gmm:random:{seed}")
    again = data.mixture_of(f"gmm:random:{seed}")
    np.testing.assert_array_equal(m.means, again.means)
    k = len(m.weights)
    assert 3 <= k <= 10 and m.means.shape == (k, 2)
    assert abs(m.weights.sum() - 1) < 1e-12 and 0.02 <= m.weights.min() <= 0.05
    assert (m.stds >= 0.03).all() and (m.stds <= 0.12).all()
    d = np.sqrt(((m.means[:, None] - m.means[None]) ** 2).sum(-1))
    s = 4 * (m.stds[:, None] + m.stds[None])
    off = ~np.eye(k, dtype=bool)
    assert (d[off] > s[off]).all()                      # 4-std balls never touch: modes are countable
    assert abs((m.weights[:, None] * m.means).sum(0)).max() < 1e-12 and np.abs(m.means).max() < 2.5


def test_family_spans_close_to_far_and_small_to_large():
    mixes = [data.mixture_of(f"gmm:random:{s}") for s in range(8)]
    near = [np.sort(np.sqrt(((m.means[:, None] - m.means[None]) ** 2).sum(-1)), 1)[:, 1].min() for m in mixes]
    assert min(near) < 0.6 and max(near) > 0.9
    assert len({len(m.weights) for m in mixes}) >= 4


def test_json_mixture_round_trip_and_teacher(tmp_path):
    p = tmp_path / "five.json"
    means = [[-1.5, 0.0], [1.5, 0.0], [0.0, 1.4], [0.0, -1.4], [1.2, 1.2]]
    p.write_text(json.dumps({"means": means, "stds": 0.08, "weights": [3, 3, 2, 1.5, 0.5]}))
    m = data.mixture_of(f"gmm:{p}")
    np.testing.assert_allclose(m.weights, np.array([3, 3, 2, 1.5, 0.5]) / 10)
    np.testing.assert_allclose(m.stds, 0.08)
    src = data.open_source(f"gmm:{p}", size=20_000, seed=1)
    x, lab = src.arrays["x"], src.arrays["label"]
    np.testing.assert_allclose(np.bincount(lab, minlength=5) / 20_000, m.weights, atol=0.01)
    np.testing.assert_allclose(x[lab == 4].mean(0), means[4], atol=0.02)
    # the analytic teacher follows any mixture: at tiny sigma D(x) ~ x; its Heun-35 samples are the mixture
    cfg = ml_collections.ConfigDict(dict(source=f"gmm:{p}", shape=(2,), num_classes=0))
    T = teacher.load(ml_collections.ConfigDict(dict(workdir="analytic")), cfg)
    y = np.asarray(T.denoise({}, x[:64], 0.002))
    assert np.abs(y - x[:64]).max() < 1e-3
    h = toy.heun_reference(m, jax.random.PRNGKey(0), 4000)
    rec, off = toy.mode_stats(m, h)
    assert rec.all() and off < 0.01
    assert toy.energy_distance(h, m.sample_np(3, 4000)[0], 4000) < 3 * toy.energy_distance(
        m.sample_np(4, 4000)[0], m.sample_np(3, 4000)[0], 4000) + 2e-3


def test_mode_stats_sees_missing_modes_and_smear():
    m = toy.GaussianMixture(np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]]), np.full(3, 0.05), np.array([0.48, 0.48, 0.04]))
    x, comp = m.sample_np(0, 5000)
    rec, off = toy.mode_stats(m, x)
    assert rec.all() and off < 0.01
    rec, _ = toy.mode_stats(m, x[comp != 2])             # the rare mode dropped
    assert rec.tolist() == [True, True, False]
    smear = np.concatenate([x[:4500], np.random.default_rng(0).uniform(-1, 1, (500, 2))])
    assert 0.08 < toy.mode_stats(m, smear)[1] < 0.11    # ~10% put between modes
    # the exact Heun sampler of a 3-mode mixture: an EDM sampler check that needs no training
    z = jax.random.normal(jax.random.PRNGKey(1), (4000, 2))
    h = np.asarray(edm.heun_sampler(m.denoiser, z, edm.karras_sigmas(18)))
    np.testing.assert_allclose(np.bincount(m.component(h), minlength=3) / 4000, m.weights, atol=0.02)


@pytest.mark.parametrize("spec,msg", [
    ("gmm:nope", "gmm:ring | gmm:grid | gmm:random:SEED | gmm:PATH.json"),
    ("gmm:random:x", "integer seed"),
    ("gmm:/nonexistent/m.json", "not found"),
])
def test_mixture_errors(spec, msg):
    with pytest.raises(data.DataError, match=msg.replace("|", r"\|")):
        data.open_source(spec)


def test_bad_json_mixture(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"means": [[0, 0], [1, 1]], "weights": [1]}))
    with pytest.raises(data.DataError, match="weights"):
        data.mixture_of(f"gmm:{p}")
    p.write_text("{not json")
    with pytest.raises(data.DataError, match="means"):
        data.mixture_of(f"gmm:{p}")
