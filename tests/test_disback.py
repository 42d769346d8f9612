"""DisBack: the recorded degradation path (DSM loss rises on teacher data, falls on G0 data),
the explicit switch schedule, resume mid-stage-2 on the scheduled target with stage 1 never
recomputed, loud failure on a wrong path checkpoint, one checkpoint resident, pluggable bases,
and backtracking vs plain distillation on the exact ring teacher at equal total steps."""
import gc
import json
import os
import shutil
import types
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genmod import edm, sample, toy, train
from genmod.methods import disback, dmd2
from tests import helpers

RING = toy.GaussianMixture.ring()
QUIET = dict(sample_every=0, num_preview=0, mesh={"data": 1})


def _tiny(total=18, base="vsd", **kw):
    """N = 3, fit 4 + record 3 x 2 = 10 stage-1 steps; stage 2 switches 2 -> 1 -> 0 at 3 and 5."""
    c = helpers.config("disback_toy", **{"batch_size": 32, "log_every": 1, "ckpt_every": 100, "keep": 10, **QUIET,
                                         **kw})
    with c.unlocked():
        c.net.hidden = (32, 32)
        c.disback.num_ckpts, c.disback.record_every, c.disback.fit_steps, c.disback.switch_at = 3, 2, 4, (3, 5)
        c.dmd2.ttur = 1
        c.total_steps = total
        if base != "vsd":
            c.disback.base = base
            c.dmd2.gan_gen_weight, c.dmd2.gan_critic_weight = 3e-3, 1e-2
    return c


def _rows(wd):
    return [json.loads(line) for line in open(os.path.join(wd, "metrics.jsonl"))]


def test_schedule_is_explicit_and_validated():
    c = helpers.config("disback_toy")
    n1, n2, sw = disback.stage_steps(c)
    assert (n1, n2, sw) == (300 + 5 * 8, 1500, (100, 200, 300, 400))
    m = disback.Method(c)
    assert [(s.name, s.num_steps) for s in m.stages()] == [("record", n1), ("backtrack", n2)]
    bt = types.SimpleNamespace(N=5, switch_at=sw)
    idx = [disback.Backtrack.target_index(bt, s) for s in (0, 99, 100, 250, 399, 400, 1199)]
    assert idx == [4, 4, 3, 2, 1, 0, 0]
    bad = [dict(switch_at=(100, 200, 300)), dict(switch_at=(100, 100, 300, 400)), dict(switch_at=(100, 200, 300, 1500)),
           dict(base="sds"), dict(num_ckpts=0)]
    for b in bad:
        with c.unlocked():
            c.disback.update(b)
        with pytest.raises(ValueError, match="disback"):
            disback.stage_steps(c)
        c = helpers.config("disback_toy")
    with c.unlocked():
        c.disback.fit_steps = 0
    with pytest.raises(ValueError, match="fit_steps"):  # the analytic teacher has no weights to copy
        disback.make_stage(disback.Record, c)


def test_vsd_gradient_is_the_unnormalised_denoiser_difference():
    c = _tiny()
    m = disback.make_stage(disback.Record, c)
    assert m.loss == "vsd"
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 2))
    p = m.init(jax.random.PRNGKey(1), {"x": x}).params
    p = {**p, "fake": jax.tree.map(lambda a: a + 0.1, p["fake"])}
    key = jax.random.PRNGKey(2)
    g, _, _ = m.dm_grad(p, x, None, key, m.frozen, {})
    k_t, k_n = jax.random.split(key)
    sigma = edm.sample_sigma(k_t, 64, c.dmd2.P_mean, c.dmd2.P_std)  # lognormal, as Diff-Instruct
    x_t = x + sigma[:, None] * jax.random.normal(k_n, x.shape)
    ref = m.fake(p["fake"], x_t, sigma, None) - RING.denoiser(x_t, sigma)
    np.testing.assert_allclose(np.asarray(g), np.asarray(ref), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_resume_mid_stage2_lands_on_the_scheduled_target_and_never_reruns_stage1(tmp_path):
    c = _tiny()
    n1, n2, sw = disback.stage_steps(c)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train.train(c, a, log=lambda *_: None)
    # stop after stage-2 step 4: past the 2 -> 1 switch at 3, before 1 -> 0 at 5
    assert train.train(c, b, stop_after=n1 + 4, log=lambda *_: None) == "preempted"
    stamp = {f: os.stat(os.path.join(disback.path_dir(b), f)).st_mtime_ns for f in os.listdir(disback.path_dir(b))}
    record_ckpts = sorted(os.listdir(os.path.join(b, "ckpt", "record")))
    train.train(c, b, log=lambda *_: None)
    helpers.assert_trees_equal(helpers.raw_state(a, "backtrack"), helpers.raw_state(b, "backtrack"))
    assert stamp == {f: os.stat(os.path.join(disback.path_dir(b), f)).st_mtime_ns for f in stamp}  # stage 1 not rerun
    assert sorted(os.listdir(os.path.join(b, "ckpt", "record"))) == record_ckpts
    man = disback.read_manifest(b)
    assert sorted(man) == ["1", "2", "3"] and [man[k]["step"] for k in ("1", "2", "3")] == [6, 8, 10]
    bt = types.SimpleNamespace(N=3, switch_at=sw)
    rows = [r for r in _rows(b) if "disback/target" in r]
    assert [r["step"] for r in rows] == list(range(1, 5)) + list(range(5, n2 + 1))  # both calls logged
    for r in rows:  # the rule that made row s ran at stage-2 step s - 1
        i = disback.Backtrack.target_index(bt, r["step"] - 1)
        assert r["disback/target"] == i
        expect = man[str(i)]["norm"] if i else 0.0  # 0: the analytic teacher (no weights)
        np.testing.assert_allclose(r["disback/target_norm"], expect, rtol=1e-5)
    assert {r["disback/target"] for r in rows} == {2, 1, 0}


def test_a_wrong_or_missing_path_checkpoint_fails_loudly(tmp_path):
    c = _tiny()
    n1, _, _ = disback.stage_steps(c)
    wd = str(tmp_path)
    train.train(c, wd, stop_after=n1 + 1, log=lambda *_: None)
    d = disback.path_dir(wd)
    shutil.copy(os.path.join(d, "001.npz"), os.path.join(d, "002.npz"))  # "loaded" the wrong weights
    with pytest.raises(disback.PathError, match="checkpoint 2.*recorded"):
        train.train(c, wd, log=lambda *_: None)
    os.remove(os.path.join(d, "002.npz"))
    with pytest.raises(disback.PathError, match="checkpoint 2 is missing"):
        train.train(c, wd, log=lambda *_: None)


def test_only_the_active_path_checkpoint_is_held(tmp_path):
    c = _tiny()
    n1, _, _ = disback.stage_steps(c)
    wd = str(tmp_path)
    train.train(c, wd, stop_after=n1, log=lambda *_: None)  # stage 1 only
    rec = helpers.raw_state(wd, "record")
    m = disback.make_stage(disback.Backtrack, c, {"record": types.SimpleNamespace(params=rec["params"])})
    state = m.init(jax.random.PRNGKey(0), {"x": jnp.zeros((32, 2))})
    helpers.assert_trees_equal(state.params["fake"], rec["params"]["fake"])  # fake <- s'_N
    helpers.assert_trees_equal(state.params["gen"], rec["params"]["gen"])    # G <- G0
    f2 = m.host_step(0, state, wd)
    assert int(f2["target_index"]) == 2 and m.host_step(2, state, wd) is None  # unchanged: no reload
    ref = weakref.ref(jax.tree.leaves(f2["target"])[0])
    f1 = m.host_step(3, state, wd)
    assert int(f1["target_index"]) == 1
    del f2
    gc.collect()
    assert ref() is None  # the method kept no reference to the previous target
    f0 = m.host_step(5, state, wd)
    assert f0["target"] is None and int(f0["target_index"]) == 0  # the teacher itself


@pytest.mark.parametrize("base", ["dmd2", pytest.param("fdistill", marks=pytest.mark.slow)])
def test_other_bases_plug_in(tmp_path, base):
    c = _tiny(total=16, base=base)
    train.train(c, str(tmp_path), log=lambda *_: None)
    rows = [r for r in _rows(str(tmp_path)) if "disback/target" in r]
    assert rows and any("gen/gan_loss" in r for r in rows)  # the base's own generator loss ran
    if base == "fdistill":
        assert any("fdistill/r_mean" in r for r in rows)


# -- the ring: recorded path and backtracking vs plain distillation ---------------------------------
FIT, N, EVERY, STAGE2 = 200, 5, 8, 800


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    c = helpers.config("disback_toy", log_every=400, ckpt_every=200, keep=10, **QUIET)
    with c.unlocked():
        c.disback.fit_steps, c.disback.num_ckpts, c.disback.record_every = FIT, N, EVERY
        c.total_steps = FIT + N * EVERY + STAGE2
    wd = str(tmp_path_factory.mktemp("disback_ring"))
    train.train(c, wd, log=lambda *_: None)
    return c, wd


def _dsm(D, x, draws=4):
    """EDM-weighted DSM loss of denoiser D on points x, common noise for every D."""
    out = []
    for k in range(draws):
        k1, k2 = jax.random.split(jax.random.PRNGKey(100 + k))
        sigma = edm.sample_sigma(k1, x.shape[0])
        err = (D(x + sigma[:, None] * jax.random.normal(k2, x.shape), sigma) - x) ** 2
        out.append(float((edm.loss_weight(sigma) * err.sum(-1)).mean()))
    return float(np.mean(out))


@pytest.mark.slow
@pytest.mark.xdist_group("disback_ring")  # shares a module fixture: one worker computes it once
def test_degradation_path_moves_from_the_teacher_to_g0(ring_run):
    c, wd = ring_run
    m = disback.make_stage(disback.Record, c)
    rec = jax.tree.map(jnp.asarray, helpers.raw_state(wd, "record"))
    x_teacher = jnp.asarray(RING.sample_np(5, 8192)[0])
    x_g0 = m.sample(rec["params"], train.seed_keys(np.arange(8192)), m.frozen, nfe=1)  # the frozen G0
    Ds = [RING.denoiser] + [lambda y, s, p=disback.load_ckpt(wd, i, rec["params"]["fake"], None): m.fake(p, y, s, None)
                            for i in range(1, N + 1)]
    on_teacher = [_dsm(D, x_teacher) for D in Ds]
    on_g0 = [_dsm(D, x_g0) for D in Ds]
    print("DSM loss along the path (0 = teacher ... N): teacher data", np.round(on_teacher, 3), "G0 data",
          np.round(on_g0, 3))
    # measured: teacher data 1.75 2.25 3.38 3.84 4.43 4.42; G0 data 8.98 1.25 0.83 0.61 0.42 0.30
    assert np.argmin(on_teacher) == 0 and np.argmin(on_g0) == N
    assert all(np.diff(on_g0) < 0)
    rise = max(on_teacher) - on_teacher[0]  # rises; flat within 2% of the rise once s' has settled on G0
    assert rise > on_teacher[0] and all(np.diff(on_teacher) > -0.02 * rise)


@pytest.mark.slow
@pytest.mark.xdist_group("disback_ring")  # shares a module fixture: one worker computes it once
def test_backtracking_vs_plain_distillation_at_equal_total_steps(ring_run, tmp_path):
    c, wd = ring_run
    n1 = FIT + N * EVERY
    plain = helpers.config("dmd2_toy", log_every=400, ckpt_every=200, keep=10, **QUIET)
    with plain.unlocked():  # the same base (VSD, TTUR 5, no GAN), critic from scratch, same total steps
        plain.dmd2.loss, plain.dmd2.ttur = "vsd", 5
        plain.dmd2.gan_gen_weight = plain.dmd2.gan_critic_weight = 0.0
        plain.total_steps, plain.ckpt_every = n1 + STAGE2, 10**6
    budgets = [400, 600, 800]  # stage-2 steps; totals n1 + budget
    done = 0
    for t in [n1 + b for b in budgets]:  # a checkpoint at each compared total
        train.train(plain, str(tmp_path), stop_after=t - done, log=lambda *_: None)
        done = t
    ref, seeds = RING.sample_np(123, 1000)[0], np.arange(1000)
    ed = lambda w, s: toy.energy_distance(sample.Sampler(w, step=s)(seeds), ref)  # noqa: E731
    back = {n1 + b: ed(wd, b) for b in budgets}
    base = {n1 + b: ed(str(tmp_path), n1 + b) for b in budgets}
    print("energy distance at equal total steps (DisBack / plain VSD):", {t: (round(back[t], 4), round(base[t], 4))
                                                                          for t in back})
    # measured: see docs/benchmarks.md
    assert back[n1 + budgets[-1]] < 0.05 and base[n1 + budgets[-1]] < 0.05


def test_disback_cifar10_runs_diff_instructs_published_base():
    """pkulwj1994/diff_instruct's CIFAR-10 command and loop: batch 128, Adam lr 1e-5 with betas
    (0, 0.999), 1:1 updates without GAN, generator input sigma 1 (--init_sigma 1.0), train-mode
    (dropout 0.13) networks, EDM networks with augment_dim 9."""
    from genmod import config_lib

    c = config_lib.load("disback_cifar10")
    d = c.dmd2
    assert (c.batch_size, d.loss, d.ttur, tuple(d.gen_sigmas), d.dropout) == (128, "vsd", 1, (1.0,), True)
    assert (c.dmd2.gan_gen_weight, c.dmd2.gan_critic_weight, c.dmd2.reg_weight) == (0.0, 0.0, 0.0)
    assert all((o.lr, o.b1, o.b2, o.clip, o.warmup_steps, o.warmup_img) == (1e-5, 0.0, 0.999, 0.0, 0, 0)
               for o in (c.optim.gen, c.optim.fake))
    assert (c.net.dropout, c.net.augment_dim, c.ema.halflife_img, c.ema.rampup) == (0.13, 9, 500_000.0, 0.05)
    assert config_lib.load("dmd2_toy").dmd2.dropout is False  # off unless a config asks for it
