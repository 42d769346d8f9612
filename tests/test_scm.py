"""sCM: the JVP tangent against finite differences, the exact consistency function of the 2-D
mixture as the tangent's fixed point, and short toy trainings (sCT, sCD from the exact teacher)."""
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genmod import sample, toy, train
from genmod.methods import scm
from tests import helpers

MIX, SD = toy.GaussianMixture.ring(), 0.5


def velocity(x, t):
    """Exact TrigFlow PF-ODE dx_t/dt = (cos(t) x_t - D(x_t / cos t; sigma_d tan t)) / sin(t)."""
    t = jnp.broadcast_to(t, x.shape[:1])
    return (jnp.cos(t)[:, None] * x - MIX.denoiser(x / jnp.cos(t)[:, None], SD * jnp.tan(t))) / jnp.sin(t)[:, None]


def f_exact(x, t, n=300, t_end=1e-3):
    """Exact consistency function: RK4 on the PF-ODE from t down to t_end, then the exact denoiser."""
    xe = helpers.rk4(velocity, x, t, jnp.full_like(t, t_end), n)
    return MIX.denoiser(xe / np.cos(t_end), jnp.full(x.shape[:1], SD * np.tan(t_end)))


def pairs(n):
    """(x0, z, t, x_t) in float64: n ring points, TrigFlow noise, t evenly over [0.1, 1.4]."""
    x0 = jnp.asarray(MIX.sample_np(0, n)[0], jnp.float64)
    z = SD * jax.random.normal(jax.random.PRNGKey(0), (n, 2), jnp.float64)
    t = jnp.linspace(0.1, 1.4, n)
    return x0, z, t, jnp.cos(t)[:, None] * x0 + jnp.sin(t)[:, None] * z


def test_exact_consistency_function_is_the_tangents_fixed_point():
    """g = cos(t) df/dt vanishes for the exact consistency function (F from f = cos x - sin sigma_d F),
    and is large for the one-step denoiser (the model that is not consistent)."""
    with jax.enable_x64(True):
        _, _, t, x = pairs(32)
        dxdt = velocity(x, t)
        F_of = lambda f: (lambda x, t: (jnp.cos(t)[:, None] * x - f(x, t)) / (SD * jnp.sin(t)[:, None]))
        F, g = scm.scm_tangent(F_of(f_exact), x, t, dxdt, SD)
        scale = float(jnp.abs(jnp.cos(t)[:, None] ** 2 * (SD * F - dxdt)).max())  # one term of g alone
        assert scale > 0.1 and float(jnp.abs(g).max()) < 1e-6 * scale
        _, g_den = scm.scm_tangent(F_of(lambda x, t: MIX.denoiser(x / jnp.cos(t)[:, None], SD * jnp.tan(t))),
                                   x, t, dxdt, SD)
        assert float(jnp.abs(g_den).max()) > 0.3


def test_jvp_tangent_is_cos_t_times_the_finite_difference_of_f():
    c = helpers.config("scm_toy")
    m = scm.Method(c)
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    n = 64
    x = jax.random.normal(k[0], (n, 2))
    t = jax.random.uniform(k[1], (n,), minval=0.2, maxval=1.4)
    dxdt = jax.random.normal(k[2], (n, 2))
    p = m.model.init(k[3], x, t)["params"]
    p = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(k[4], a.shape), p)  # non-zero output layer
    F = lambda x, t: m.F_fn(p)(x, t)[0]
    f = lambda x, t: scm.consistency_fn(F(x, t), x, t, SD)
    _, g = scm.scm_tangent(F, x, t, dxdt, SD)
    eps = 1e-3
    fd = jnp.cos(t)[:, None] * (f(x + eps * dxdt, t + eps) - f(x - eps * dxdt, t - eps)) / (2 * eps)
    scale = float(jnp.abs(fd).max())
    assert scale > 0.5
    np.testing.assert_allclose(np.asarray(g), np.asarray(fd), atol=0.01 * scale)
    wrong = jnp.cos(t)[:, None] * (f(x, t + eps) - f(x, t - eps)) / (2 * eps)  # no x tangent
    assert float(jnp.abs(wrong - fd).max()) > 0.2 * scale
    # tangent normalisation: g / (||g|| + c) per sample
    gn = scm.normalize_tangent(g, 0.1)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(gn), axis=1),
                               np.linalg.norm(np.asarray(g), axis=1) / (np.linalg.norm(np.asarray(g), axis=1) + 0.1),
                               rtol=1e-5)


@pytest.mark.parametrize("net", [
    dict(arch="unet", model_channels=16, channel_mult=(1,), num_blocks=1, attn_resolutions=(8,)),
    dict(arch="genmod.nets.dit:dit", patch=2, width=32, depth=2, heads=2, freq_dim=32),
], ids=["unet", "dit"])
def test_jvp_tangent_through_image_networks_is_exact_and_unchanged_under_fsdp(net):
    """Issue #21: the tangent is one forward-mode jax.jvp through the backbone, attention (and
    the U-Net's 1x1 convolutions' custom JVP) included: cos(t) times a central difference of f,
    and the same numbers with the parameters FSDP-sharded over a data 2 x fsdp 2 mesh."""
    from genmod import config_lib, sharding

    c = helpers.config("scm_digits", net=config_lib.ConfigDict(dict(net, dropout=0.0)))
    m = scm.Method(c)
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    n = 8
    x = jax.random.normal(k[0], (n, 8, 8, 1))
    t = jax.random.uniform(k[1], (n,), minval=0.2, maxval=1.4)
    dxdt = jax.random.normal(k[2], (n, 8, 8, 1))
    p = jax.jit(m.model.init)(k[3], x, t)["params"]
    p = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(k[4], a.shape), p)  # non-zero output layers
    tangent = jax.jit(lambda p, x, t, v: scm.scm_tangent(lambda x, t: m.F_fn(p)(x, t)[0], x, t, v, SD)[1])
    g = tangent(p, x, t, dxdt)
    eps = 1e-2
    f = jax.jit(jax.vmap(lambda s: scm.consistency_fn(m.F_fn(p)(x + s * dxdt, t + s)[0], x + s * dxdt, t + s, SD)))
    f_plus, f_minus = f(jnp.asarray([eps, -eps]))
    fd = jnp.cos(t)[:, None, None, None] * (f_plus - f_minus) / (2 * eps)
    scale = float(jnp.abs(fd).max())
    assert scale > 0.1
    np.testing.assert_allclose(np.asarray(g), np.asarray(fd), atol=0.01 * scale)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2})
    sh = sharding.state_shardings(p, mesh, min_size=64)
    assert any(s.spec != jax.sharding.PartitionSpec() for s in jax.tree.leaves(sh))
    g_fsdp = tangent(jax.device_put(p, sh), jax.device_put(x, sharding.batch_sharding(mesh)), t, dxdt)
    np.testing.assert_allclose(np.asarray(g_fsdp), np.asarray(g), rtol=1e-4, atol=1e-5 * scale)


def test_target_network_is_an_ema_of_the_weights_and_off_by_default():
    """``scm.target_mu`` > 0: F^- and its JVP come from theta^- <- mu theta^- + (1 - mu) theta (a study
    lever, docs/benchmarks.md "sCM, round 4"); 0 (the paper's stop_gradient(theta)) keeps no copy."""
    batch = {"x": jnp.asarray(MIX.sample_np(0, 64)[0], jnp.float32)}
    assert "target" not in scm.Method(helpers.config("scm_toy")).init(jax.random.PRNGKey(0), batch).extra
    m = scm.Method(helpers.config("scm_toy", scm__target_mu=0.75))
    s0 = m.init(jax.random.PRNGKey(0), batch)
    s1, _ = jax.jit(m.train_step)(s0, batch, {})
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), s1.params["net"], s0.params["net"])
    assert max(jax.tree.leaves(moved)) > 1e-4
    want = jax.tree.map(lambda old, new: 0.75 * old + 0.25 * new, s0.extra["target"], s1.params["net"])
    for a, b in zip(jax.tree.leaves(s1.extra["target"]), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_batch_velocity_is_the_pf_ode_of_the_minibatch():
    """sCT's ``velocity=batch``: the PF-ODE of x0 uniform over the batch's rows, i.e. of a mixture
    of (nearly) point masses there, against its closed-form denoiser; the one-sample velocity
    differs from it by the spread of x0 given x_t."""
    c = helpers.config("scm_toy", scm__velocity="batch")
    m = scm.Method(c)
    with jax.enable_x64(True):
        x0, z, t, x = pairs(64)
        n = len(x0)
        v = m.velocity(x0, z, x, t, None, None)
        deltas = toy.GaussianMixture(np.asarray(x0), np.full(n, 1e-5), np.full(n, 1.0 / n))
        D = deltas.denoiser(x / jnp.cos(t)[:, None], SD * jnp.tan(t))
        np.testing.assert_allclose(np.asarray(v), np.asarray((jnp.cos(t)[:, None] * x - D) / jnp.sin(t)[:, None]),
                                   rtol=1e-6, atol=1e-8)
        one = jnp.cos(t)[:, None] * z - jnp.sin(t)[:, None] * x0
        assert float(jnp.abs(one - v).max()) > 0.1
    with pytest.raises(Exception, match="velocity=batch is sCT's"):
        scm.Method(helpers.config("scm_toy:scd", scm__velocity="batch"))


def test_trigflow_matches_edm_preconditioning():
    """The backbone's output is -F, so an EDM backbone with c_noise=edm is the same denoiser."""
    from genmod import edm, nets

    c = helpers.config("scm_toy")
    net = nets.build(c.net, (2,))
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 2))
    t = jnp.linspace(0.1, 1.5, 16)
    D = edm.EDMPrecond(net, SD)
    p = D.init(jax.random.PRNGKey(1), x, jnp.ones(16))["params"]
    p = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.PRNGKey(2), a.shape), p)
    tf = scm.TrigFlow(net, SD, "edm")
    q = tf.init(jax.random.PRNGKey(3), x, t)["params"]
    F, _ = tf.apply({"params": {**q, "net": p["net"]}}, x, t)
    f = scm.consistency_fn(F, x, t, SD)
    ref = D.apply({"params": p}, x / jnp.cos(t)[:, None], SD * jnp.tan(t))
    np.testing.assert_allclose(np.asarray(f), np.asarray(ref), rtol=1e-4, atol=1e-5)


def _train(steps, **kw):
    wd = tempfile.mkdtemp()
    c = helpers.config("scm_toy", total_steps=steps, ckpt_every=steps, log_every=steps, sample_every=0,
                       num_preview=0, keep=5, mesh={"data": 1}, **kw)
    with c.unlocked():
        c.scm.warmup_steps = steps // 3
    train.train(c, wd, stop_after=1, log=lambda *_: None)  # step 1: the untrained baseline
    train.train(c, wd, log=lambda *_: None)
    ref = MIX.sample_np(123, 1000)[0]
    return lambda step, nfe: toy.energy_distance(sample.Sampler(wd, step=step, nfe=nfe)(np.arange(1000)), ref)


@pytest.mark.slow
def test_sct_learns_one_step_sampling():
    ed = _train(1000)
    untrained, one, two = ed(1, 1), ed(None, 1), ed(None, 2)
    print(f"sCT energy distance: untrained {untrained:.4f}, 1-step {one:.4f}, 2-step {two:.4f}")
    # measured 0.0012 / 0.0006 (untrained 0.575; no adaptive weight, lr 2e-3, b2 0.99, batch 512; b2 0.999:
    # 0.0018 / 0.0006; at batch 1,024
    # 0.0014 / 0.0005); with the learned weight at lr 3e-4, 0.022-0.025 / 0.0012-0.0013; with the old
    # time embedding (noise_scale 100) and lr 1e-4, 1-step 0.073 (sCT) / 0.095 (sCD) at this length
    assert one < untrained / 150 and two < untrained / 300


@pytest.mark.slow
def test_scd_from_exact_teacher_learns_one_step_sampling():
    ed = _train(1000, scm__mode="scd", scm__velocity="sample", teacher={"workdir": "analytic", "step": 0})
    untrained, one, two = ed(1, 1), ed(None, 1), ed(None, 2)
    print(f"sCD energy distance: untrained {untrained:.4f}, 1-step {one:.4f}, 2-step {two:.4f}")
    # measured 0.0022 / 0.0005 (untrained 0.575; no adaptive weight, lr 2e-3, b2 0.99, batch 512; b2 0.999:
    # 0.0016 / 0.0005; at batch 1,024
    # 0.0011 / 0.0005); with the learned weight at lr 3e-4, 0.022-0.025 / 0.0012-0.0013; with the old
    # time embedding (noise_scale 100) and lr 1e-4, 1-step 0.073 (sCT) / 0.095 (sCD) at this length
    assert one < untrained / 150 and two < untrained / 300


def _eqns(jaxpr):
    """Every equation of a jaxpr, nested ones (jit, custom_jvp, remat) included."""
    for e in jaxpr.eqns:
        yield e
        for v in e.params.values():
            for sub in (v if isinstance(v, (tuple, list)) else (v,)):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    yield from _eqns(sub)


def test_time_embedding_and_its_tangent_stay_float32_in_a_bf16_network():
    """Issue #21 (users of NVlabs/rcm saw gradient spikes, then noise, that fp32 time embeddings
    fix): in a bf16 U-Net every sinusoid of t (the U-Net's embedding, the adaptive weight's
    features) and its JVP tangent is computed in float32 from a float32 t, while the
    convolutions run in bf16."""
    from genmod.nets.unet import SongUNet

    net = SongUNet(img_resolution=8, in_channels=1, out_channels=1, model_channels=16, channel_mult=(1, 2),
                   num_blocks=1, attn_resolutions=(4,), dtype=jnp.bfloat16)
    tf = scm.TrigFlow(net, SD, "t")
    x, t = jnp.zeros((2, 8, 8, 1)), jnp.full((2,), 0.7)
    p = jax.eval_shape(tf.init, jax.random.PRNGKey(0), x, t)["params"]
    F = lambda p, x, t: tf.apply({"params": p}, x, t)[0]
    jvp = lambda p, x, t: jax.jvp(lambda x, t: F(p, x, t), (x, t), (x, jnp.ones_like(t)))
    jaxpr = jax.make_jaxpr(jvp)(p, x, t).jaxpr
    eqns = list(_eqns(jaxpr))
    trig = [e for e in eqns if e.primitive.name in ("sin", "cos")]
    assert trig and all(v.aval.dtype == jnp.float32 for e in trig for v in e.outvars)
    # nor is t itself (shape (2,)) ever rounded to bf16 on the way there
    to_bf16 = [e for e in eqns if e.primitive.name == "convert_element_type" and e.params["new_dtype"] == jnp.bfloat16]
    assert not [e for e in to_bf16 if getattr(e.invars[0].aval, "shape", None) == t.shape]
    assert any(v.aval.dtype == jnp.bfloat16 for e in eqns if "conv" in e.primitive.name for v in e.outvars)
