"""CDRL: the schedule, Langevin on a known Gaussian, noisy pairs, guidance, and cooperative
training on the 8-mode ring through the real loop, against its untrained model and against
plain DRL trained identically but without the initializer."""
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genmod import config_lib, sample, toy, train
from genmod.methods import cdrl
from tests import helpers

K = 4  # Langevin steps per level in training
STEPS = 400


def test_schedule_matches_the_official_table():
    k = cdrl.defaults()
    ab = jax.nn.sigmoid(cdrl.logsnr(jnp.arange(7) / 6, k.logsnr_min, k.logsnr_max))
    np.testing.assert_allclose(ab, [0.99994, 0.936, 0.768, 0.535, 0.294, 0.102, 0.0061], rtol=0.01, atol=1e-4)
    L = cdrl.level(jnp.arange(1, 7), k)  # step^2 from ~2.5e-5 (level 1) to ~4.8e-2 (level 6)
    np.testing.assert_allclose([L.d2[0], L.d2[-1]], [2.5e-5, 4.8e-2], rtol=0.05)
    np.testing.assert_allclose(L.w[0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(L.r, [*(L.ab_t[:5] / L.ab_s[:5]), 1.0], rtol=1e-6)  # top level: r = 1


def test_cifar10_config_has_the_published_settings():
    c = config_lib.load("cdrl_cifar10")
    k = c.cdrl
    assert (k.levels, k.langevin_steps, c.sample.nfe, k.logsnr_min, k.logsnr_max) == (6, 15, 15, -5.1, 9.8)
    assert (k.b2, k.step_c, k.tweedie, k.initializer, k.variance_reduction, k.init_noise) == (4e-4, "level", 2.0, True,
                                                                                             True, True)
    assert (c.optim.ebm.lr, c.optim.init.lr, c.batch_size, c.total_steps) == (1e-4, 1e-5, 256, 500_000)
    assert (c.optim.ebm.clip, c.optim.init.clip, c.optim.ebm.warmup_steps) == (1.0, 1.0, 10_000)
    assert abs(0.5 ** (c.batch_size / c.ema.halflife_img) - 0.9999) < 1e-9 and c.ema.rampup == 0
    e = c.ebm_net
    assert (e.ch, tuple(e.ch_mult), e.num_blocks, e.spectral_norm) == (128, (1, 2, 2, 2), 8, True)
    assert (c.init_net.model_channels, tuple(c.init_net.channel_mult), c.init_net.num_blocks) == (64, (1, 1, 1), 3)


@pytest.mark.parametrize("t", [3, 6])  # a coupled level, and the top level (no coupling)
def test_langevin_on_a_quadratic_energy_reaches_the_gaussian(t):
    """f(y) = -d2 |y - m|^2 / (2 tau2): the recovery chain's target is the product of N(m, tau2)
    with the coupling N(x_t, sig2) (none at the top level); ULA's stationary variance is
    v / (1 - d2 / (4 v)) (7-15% above v here), which the chain's variance must match."""
    k, n, d = config_lib.load("cdrl_toy").cdrl.copy_and_resolve_references(), 16000, 2
    with k.unlocked():
        k.step_c = "const"  # a large step (d2 ~ 0.27 sig2): the discretisation bias is visible
    L = cdrl.level(jnp.full((n,), t), k)
    sig2, d2, final = float(L.sig2[0]), float(L.d2[0]), bool(L.final[0])
    m, x_t, tau2 = jnp.array([-0.2, 0.4]), jnp.array([0.5, -0.5]), sig2
    energy = lambda y: -L.d2 * jnp.sum((y - m) ** 2, -1) / (2 * tau2)  # noqa: E731
    key = jax.random.PRNGKey(t)
    noise = lambda i: jax.random.normal(jax.random.fold_in(key, i), (n, d))  # noqa: E731
    y = np.asarray(cdrl.recovery_chain(energy, jnp.zeros((n, d)), x_t, L, noise, 500))
    prec = 1 / tau2 + (0.0 if final else 1 / sig2)
    v = 1 / prec
    mu = v * (np.asarray(m) / tau2 + (0.0 if final else np.asarray(x_t) / sig2))
    v_ula = v / (1 - d2 / (4 * v))
    se = np.sqrt(v_ula / n)
    assert np.all(np.abs(y.mean(0) - mu) < 4 * se), (y.mean(0), mu, se)
    err = abs(y.var(0).mean() / v_ula - 1)
    assert err < 0.025 and err < 0.5 * abs(v_ula / v - 1), (y.var(0), v_ula, v)  # nearer ULA's law than v


def _method(**overrides):
    return cdrl.Method(helpers.config("cdrl_toy", **overrides))


def test_noisy_pairs_share_their_noise_only_with_variance_reduction():
    x = toy.GaussianMixture.ring().sample(jax.random.PRNGKey(0), 20000)
    L = cdrl.level(jnp.arange(20000) % 6 + 1, cdrl.defaults())
    eps = lambda z, ab: (z - jnp.sqrt(ab)[:, None] * x) / jnp.sqrt(1 - ab)[:, None]  # noqa: E731
    x_s, x_t = _method().pairs(x, L, jax.random.PRNGKey(1))
    np.testing.assert_allclose(eps(x_s, L.ab_s), eps(x_t, L.ab_t), atol=2e-3)
    x_s, x_t = _method(cdrl__variance_reduction=False).pairs(x, L, jax.random.PRNGKey(1))
    gap = np.abs(np.asarray(eps(x_s, L.ab_s) - eps(x_t, L.ab_t))).mean()
    assert gap > 0.1, gap
    # independent noise: x_t | x_s ~ N(a x_s, sig2), per level (same marginals as shared noise)
    res = np.asarray((x_t - jnp.sqrt(1 - L.sig2)[:, None] * x_s) / jnp.sqrt(L.sig2)[:, None])
    np.testing.assert_allclose(res.std(), 1.0, atol=0.02)


def test_guidance_combines_both_networks_and_bad_configs_fail_clearly():
    """(1 + w) f(y, c) - w f(y, null) and the same on the initializer's residual, with the
    all-zero one-hot as the null class; sampling with guidance is per-seed reproducible."""
    w = 0.7
    m = _method(data__num_classes=8, cdrl__guidance=w, sample__nfe=1)
    x = toy.GaussianMixture.ring().sample(jax.random.PRNGKey(0), 8)
    st = jax.jit(m.init)(jax.random.PRNGKey(1), {"x": x, "label": jnp.arange(8)})
    P, S = st.params, st.extra.get("ebm_stats")
    lab, null = jax.nn.one_hot(jnp.arange(8), 8), jnp.zeros((8, 8))
    # the initializer's last layer starts at zero: perturb it so that labels matter
    P = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), P)
    L = cdrl.level(jnp.full((8,), 3), m.k)
    f = lambda l, w=0.0: m.f(P["ebm"], S, x, L.ls_s, l, w)  # noqa: E731
    assert float(jnp.abs(f(lab) - f(null)).max()) > 1e-3
    np.testing.assert_allclose(f(lab, w), (1 + w) * f(lab) - w * f(null), rtol=1e-5, atol=1e-5)
    z = jnp.zeros_like(x)
    q = lambda l, w=0.0: m.propose(P["init"], x, L, l, z, w) - x  # noqa: E731
    assert float(jnp.abs(q(lab) - q(null)).max()) > 1e-3
    np.testing.assert_allclose(q(lab, w), (1 + w) * q(lab) - w * q(null), rtol=1e-5, atol=1e-5)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(4))
    run = jax.jit(lambda k: m.sample({**P, "ebm_stats": S}, k, {}))
    a, b = np.asarray(run(keys)), np.asarray(run(keys[::-1]))[::-1]
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-5)
    for bad, msg in ((dict(cdrl__step_c="linear"), "step_c"), (dict(cdrl__guidance=1.0), "conditional")):
        with pytest.raises(ValueError, match=msg):
            _method(**bad)
    c = helpers.config("cdrl_toy")
    with c.unlocked():
        del c.init_net
    with pytest.raises(ValueError, match="init_net"):
        cdrl.Method(c)


def _train(name, wd, untrained=False):
    c = helpers.config(name, total_steps=STEPS, batch_size=128, log_every=STEPS, ckpt_every=STEPS, sample_every=0,
                       num_preview=0, mesh={"data": 1}, cdrl__langevin_steps=K, sample__nfe=K)
    if untrained:  # step-1 checkpoint: the near-untrained baseline
        train.train(c, wd, stop_after=1, log=lambda *_: None)
    train.train(c, wd, log=lambda *_: None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    t0 = time.time()
    root = tmp_path_factory.mktemp("cdrl")
    _train("cdrl_toy", str(root / "cdrl"), untrained=True)
    _train("drl_toy", str(root / "drl"))
    print(f"\ntrained cdrl + drl ({STEPS} steps, K={K}) in {time.time() - t0:.1f}s")
    return root


REF = toy.GaussianMixture.ring().sample_np(123, 1000)[0]
SEEDS = np.arange(1000)


def proposal_bias(s, p_init, n=96, reps=256):
    """Mean over data pairs (all levels) of |E[y_K - y_0 | x_t]|^2 (each x_t with ``reps``
    proposals and chains under the trained EBM; Monte-Carlo variance subtracted): how far the
    refined samples' mean lies from the initializer's mean. 0 for an exact initializer, whose
    proposals the chain leaves in place on average."""
    m, P = s.run.method, s.params
    kx, ke, kz, kl = jax.random.split(jax.random.PRNGKey(7), 4)
    x = toy.GaussianMixture.ring().sample(kx, n)
    t = jnp.arange(n) % m.k.levels + 1
    Ln = cdrl.level(t, m.k)
    x_t = jnp.sqrt(Ln.ab_t)[:, None] * x + jnp.sqrt(1 - Ln.ab_t)[:, None] * jax.random.normal(ke, x.shape)
    x_t, L = jnp.repeat(x_t, reps, 0), cdrl.level(jnp.repeat(t, reps), m.k)
    y0 = m.propose(p_init, x_t, L, None, jax.random.normal(kz, x_t.shape))
    noise = lambda i: jax.random.normal(jax.random.fold_in(kl, i), x_t.shape)  # noqa: E731
    energy = lambda y: m.f(P["ebm"], P.get("ebm_stats"), y, L.ls_s, None)  # noqa: E731
    d = np.asarray(cdrl.recovery_chain(energy, y0, x_t, L, noise, K) - y0).reshape(n, reps, -1)
    return float(((d.mean(1) ** 2).sum(-1) - d.var(1).sum(-1) / reps).mean())


@pytest.mark.slow
@pytest.mark.xdist_group("cdrl_runs")  # shares a module fixture: one worker computes it once
def test_cdrl_learns_the_mixture_and_its_initializer_approaches_the_chain(runs):
    """Measured (400 steps, K=4): energy distance 4.42 at step 1 -> 0.019 (initializer alone
    0.042); the refined samples' mean offset from the proposals 0.125 -> 0.006."""
    trained_s, untrained_s = sample.Sampler(str(runs / "cdrl")), sample.Sampler(str(runs / "cdrl"), step=1)
    trained, untrained = (toy.energy_distance(s(SEEDS), REF) for s in (trained_s, untrained_s))
    init_only = toy.energy_distance(sample.Sampler(str(runs / "cdrl"), nfe=0)(SEEDS), REF)
    bias_trained, bias_untrained = (proposal_bias(trained_s, s.params["init"]) for s in (trained_s, untrained_s))
    print(f"cdrl K={K}: energy distance untrained {untrained:.4f} trained {trained:.4f} (initializer alone "
          f"{init_only:.4f}); refined-vs-proposal mean^2: step-1 initializer {bias_untrained:.4f}, "
          f"trained {bias_trained:.4f}")
    assert trained < 0.03 and trained < untrained / 20, (trained, untrained)
    assert bias_trained < bias_untrained / 5, (bias_trained, bias_untrained)


@pytest.mark.slow
@pytest.mark.xdist_group("cdrl_runs")  # shares a module fixture: one worker computes it once
def test_initializer_beats_plain_drl_with_fewer_langevin_steps(runs):
    """The paper's claim: with the initializer, fewer Langevin steps per level suffice. Both
    trained identically with K=4; sampled with 1 and 2 steps per level DRL's chains from x_t
    fall short while CDRL's start near their end. Measured (400 steps): K=1 CDRL 0.024 vs DRL
    0.243, K=2 0.018 vs 0.032. At the full K=4 DRL is better on this 2-D toy (0.019 vs 0.005):
    printed, not asserted."""
    ed = {(n, k): toy.energy_distance(sample.Sampler(str(runs / n), nfe=k)(SEEDS), REF)
          for n in ("cdrl", "drl") for k in (1, 2, K)}
    print("energy distance by Langevin steps per level: " + ", ".join(
        f"K={k}: CDRL {ed['cdrl', k]:.4f} DRL {ed['drl', k]:.4f}" for k in (1, 2, K)))
    assert ed["cdrl", 1] < 0.25 * ed["drl", 1], ed
    assert ed["cdrl", 2] < ed["drl", 2], ed
