"""Consistency models: boundary condition, iCT schedules and loss, shared dropout mask,
training on the 2-D mixture (iCT; CD from the exact teacher), curriculum-boundary resume."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from genmod import data, edm, sample, toy, train
from genmod.methods import cm
from tests import helpers

FAST = dict(log_every=500, sample_every=0, num_preview=0, keep=5, mesh={"data": 1})


def test_boundary_condition_exact():
    c = helpers.config("cm_toy:ict")
    m = cm.Method(c)
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 2)) * 3
    p = m.f.init(jax.random.PRNGKey(1), x, jnp.ones(16))["params"]
    p = jax.tree.map(lambda a: a + 0.1, p)  # non-zero output layer too
    out = m.fn(p)(x, jnp.full(16, 0.002))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
    assert not np.allclose(np.asarray(m.fn(p)(x, jnp.full(16, 0.5))), np.asarray(x))


def test_index_pmf_is_erf_differences():
    c = cm.defaults()
    for N in (11, 161, 1281):
        logits = cm.ict_index_logits(jnp.int32(N), 1281, c)
        p = np.exp(np.asarray(logits, np.float64))
        p /= p.sum()
        s = np.asarray([cm.karras(i, N) for i in range(N)], np.float64)
        cdf = erf((np.log(s) + 1.1) / (math.sqrt(2) * 2.0))
        ref = np.diff(cdf) / np.diff(cdf).sum()
        np.testing.assert_allclose(p[: N - 1], ref, rtol=2e-3, atol=1e-7)
        assert p[N - 1:].sum() == 0 and abs(p.sum() - 1) < 1e-9


def test_curricula_match_published():
    K = 400_000
    stages = [int(cm.ict_N(k, K)) for k in range(0, K, 50_000)]
    assert stages == [11, 21, 41, 81, 161, 321, 641, 1281]
    assert int(cm.ict_N(K - 1, K)) == 1281 and int(cm.ict_N(49_999, K)) == 11
    assert [int(cm.ct_N(k, 800_000)) for k in (0, 799_999)] == [2, 151]
    np.testing.assert_allclose(float(cm.ct_mu(jnp.float32(2), rule="paper")), 0.9, rtol=1e-6)  # mu(0) = mu0


def test_pseudo_huber_uses_the_norm():
    a, b = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 8, 8, 3))
    c = 0.00054 * math.sqrt(192)
    got = cm.pseudo_huber(a, b, c)
    ref = np.sqrt(((np.asarray(a) - np.asarray(b)) ** 2).reshape(4, -1).sum(1) + c**2) - c
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    elementwise = (jnp.sqrt((a - b) ** 2 + c**2) - c).reshape(4, -1).sum(1)
    assert np.all(np.abs(np.asarray(elementwise) - np.asarray(got)) > 1.0)  # the common bug differs


class MaskEcho(nn.Module):
    """F = dropout(ones): the output is the dropout mask (x 2)."""

    @nn.compact
    def __call__(self, x, c_noise, labels=None, *, train=False):
        _ = self.param("w", nn.initializers.zeros, (1,))
        return nn.Dropout(0.5, deterministic=not train)(jnp.ones_like(x))


def test_student_and_target_share_the_dropout_mask():
    c = helpers.config("cm_toy:ict")
    m = cm.Method(c)
    m.f = edm.EDMPrecond(MaskEcho(), 0.5, 0.002)
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 2))
    p = m.f.init(jax.random.PRNGKey(1), x, jnp.ones(64))["params"]
    key = jax.random.PRNGKey(5)
    s, t, _ = m.ict_pair(p, x, key, jnp.int32(0), None)
    # recover each call's mask: out = c_skip (x + sigma z) + c_out * mask
    k_i, k_z, _ = jax.random.split(key, 3)
    N = cm.ict_N(0, c.total_steps, c.cm.s0, c.cm.s1)
    i = jax.random.categorical(k_i, cm.ict_index_logits(N, c.cm.s1 + 1, c.cm), shape=(64,))
    z = jax.random.normal(k_z, x.shape)

    def mask(out, sigma):
        cs, co, _, _ = edm.precond(sigma, 0.5, 0.002)
        return (out - cs[:, None] * (x + sigma[:, None] * z)) / co[:, None]

    ms = mask(s, cm.karras(i + 1, N))
    mt = mask(t, cm.karras(i, N))
    ok = np.asarray(i) > 0  # at i = 0 the target sits at sigma_min, where c_out = 0 hides the mask
    assert ok.sum() > 40
    np.testing.assert_allclose(np.asarray(ms)[ok], np.asarray(mt)[ok], atol=1e-3)
    assert 0.3 < float((ms > 1).mean()) < 0.7  # dropout really was on


def test_cd_span_target_is_the_teachers_heun_path_between_the_two_levels():
    """cm.cd_span (CTM's soft matching): the target point is the exact teacher's Heun path from
    the student's level hi down to level lo, hi - lo up to the span, each sample stopping at its
    own lo; EDM's Heun sampler on the same levels is the reference."""
    c = helpers.config("cd_toy", data__source="gmm:random:1", cm__cd_substeps=1)
    m, N = cm.Method(c), c.cm.cd_N
    levels = np.asarray(cm.karras(np.arange(N), N))
    D = lambda x, s: m.teacher.denoise(m.frozen["teacher"], x, s, None)  # noqa: E731
    z = jax.random.normal(jax.random.PRNGKey(0), (4 * 128, 2))
    pairs = [(N - 1, 0), (N - 1, 12), (9, 3), (5, 4)]
    hi = jnp.repeat(jnp.array([h for h, _ in pairs]), 128)
    lo = jnp.repeat(jnp.array([l for _, l in pairs]), 128)
    got = np.asarray(m.teacher_heun(D, jnp.asarray(levels)[hi][:, None] * z, hi, lo, N, N - 1))
    for k, (h, l) in enumerate(pairs):
        sig = np.append(levels[l:h + 1][::-1], levels[l])  # Heun h -> l, then a zero-length Euler step
        ref = edm.heun_sampler(D, z[k * 128:(k + 1) * 128], sig)
        np.testing.assert_allclose(got[k * 128:(k + 1) * 128], np.asarray(ref), rtol=1e-4, atol=1e-5, err_msg=str((h, l)))
    top, bottom = jnp.full((4000,), N - 1), jnp.zeros((4000,), jnp.int32)  # all the way down: the mixture
    x0 = m.teacher_heun(D, 80.0 * jax.random.normal(jax.random.PRNGKey(1), (4000, 2)), top, bottom, N, N - 1)
    rec, off = toy.mode_stats(data.mixture_of("gmm:random:1"), np.asarray(x0))
    assert all(rec) and off < 0.02, (rec, off)
    # cd_substeps 2: each grid step is two Heun steps, through the level halfway in sigma^(1/rho)
    m2 = cm.Method(helpers.config("cd_toy", data__source="gmm:random:1", cm__cd_substeps=2))
    h, l = 9, 3
    got = m2.teacher_heun(D, levels[h] * z[:128], jnp.full((128,), h), jnp.full((128,), l), N, N - 1)
    fine = np.asarray(cm.karras(np.arange(2 * l, 2 * h + 1) / 2, N))[::-1]
    ref = edm.heun_sampler(D, z[:128], np.append(fine, fine[-1]))
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-4, atol=1e-5)
    for bad in (dict(cm__cd_span=N), dict(cm__cd_substeps=0)):
        with pytest.raises(ValueError, match="cm.cd_s"):
            cm.Method(helpers.config("cd_toy", **bad))


def test_batch_posterior_mean_is_the_exact_denoiser_of_the_batch():
    """cm.ct_x0 = "batch": E[x0 | y] with x0 uniform over the batch is the closed-form denoiser of
    a mixture of vanishing-std modes at the batch's points; with labels, only same-label rows."""
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 2))
    mix = toy.GaussianMixture(np.asarray(x), np.full(64, 1e-6), np.full(64, 1 / 64))
    y = 2.0 * jax.random.normal(jax.random.PRNGKey(1), (32, 2))
    for s in (0.01, 0.3, 5.0, 80.0):
        sig = jnp.full((32,), s)
        np.testing.assert_allclose(np.asarray(cm.batch_posterior_mean(x, y, sig)), np.asarray(mix.denoiser(y, sig)),
                                   rtol=2e-4, atol=2e-5, err_msg=str(s))
    x_at = jax.random.normal(jax.random.PRNGKey(2), (32, 2))  # at sigma_min each y's own x0 (they are far apart)
    np.testing.assert_allclose(cm.batch_posterior_mean(x_at, x_at + 1e-4, jnp.full((32,), 0.002)), x_at, atol=2e-4)
    lab = jax.nn.one_hot(jnp.arange(64) % 2, 2)
    got = cm.batch_posterior_mean(x, x, jnp.full((64,), 80.0), lab)  # sigma 80: the mean of the own class
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(x[0::2].mean(0)), atol=1e-3)
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(x[1::2].mean(0)), atol=1e-3)


def _train_and_measure(name, steps, **kw):
    import tempfile

    wd = tempfile.mkdtemp()
    c = helpers.config(name, total_steps=steps, ckpt_every=steps, **FAST, **kw)
    train.train(c, wd, stop_after=1, log=lambda *_: None)  # step 1: the untrained baseline
    train.train(c, wd, log=lambda *_: None)
    ref = toy.GaussianMixture.ring().sample_np(123, 1000)[0]
    seeds = np.arange(1000)
    ed = lambda step, nfe: toy.energy_distance(sample.Sampler(wd, step=step, nfe=nfe)(seeds), ref)
    return ed, ref


@pytest.mark.slow
@pytest.mark.optimized  # 800-1,200 steps: XLA's optimisations pay for their compile
def test_ict_learns_mixture_and_two_steps_beat_one():
    ed, _ = _train_and_measure("cm_toy:ict", 1200)
    untrained, one, two = ed(1, 1), ed(None, 1), ed(None, 2)
    print(f"iCT energy distance: untrained {untrained:.4f}, 1-step {one:.4f}, 2-step {two:.4f}")
    # measured: untrained 0.575, 1-step 0.042, 2-step 0.0017 (2,000 steps: 0.027, 0.0014)
    assert one < untrained / 8
    assert two < one / 2


@pytest.mark.slow
@pytest.mark.optimized  # 800-1,200 steps: XLA's optimisations pay for their compile
def test_cd_from_exact_teacher_approaches_teachers_heun():
    ed, ref = _train_and_measure("cd_toy", 800)
    g = toy.GaussianMixture.ring()
    z = jax.vmap(lambda k: jax.random.normal(k, (2,)))(train.seed_keys(np.arange(1000)))
    teacher = toy.energy_distance(np.asarray(edm.heun_sampler(g.denoiser, z, edm.karras_sigmas(18))), ref)
    one = ed(None, 1)
    print(f"CD 1-step {one:.4f} vs analytic teacher Heun-18 (35 NFE) {teacher:.4f}; untrained {ed(1, 1):.4f}")
    # measured (800 steps, ~80 s): student 0.0006, teacher 0.0015, untrained 0.575 (1,500 steps:
    # 0.0005; the round-2 cd_toy, one-level pairs, 3x256 at lr 4e-4, 1,500 steps: 0.0031)
    assert one < 1.5 * teacher


def test_resume_across_curriculum_boundary_is_bit_exact(tmp_path):
    # K = 16: K' = 16 // 8 = 2, so N changes every 2 steps; stop at 3 (mid-stage) and 4 (boundary)
    c = helpers.config("cm_toy:ict", total_steps=6, batch_size=32, log_every=1, ckpt_every=100,
                       sample_every=0, num_preview=0)
    with c.unlocked():
        c.cm.s1 = 1280
    train.train(c, str(tmp_path / "a"), log=lambda *_: None)
    for stop in (3, 1):
        assert train.train(c, str(tmp_path / "b"), stop_after=stop, log=lambda *_: None) == "preempted"
    train.train(c, str(tmp_path / "b"), log=lambda *_: None)
    helpers.assert_trees_equal(helpers.raw_state(tmp_path / "a"), helpers.raw_state(tmp_path / "b"))
    assert [int(cm.ict_N(k, 6)) for k in range(6)] != [11] * 6  # the run really crossed stages
