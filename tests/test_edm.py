"""EDM math: preconditioning invariants, the Heun sampler's call pattern, and the analytic
mixture denoiser as an exact teacher."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genmod import edm, flow, toy


def test_precond_invariants():
    s = jnp.geomspace(0.002, 80.0, 50)
    c_skip, c_out, c_in, c_noise = edm.precond(s, 0.5)
    np.testing.assert_allclose(c_skip, 0.25 / (s**2 + 0.25), rtol=1e-6)
    np.testing.assert_allclose(c_out, s * 0.5 / jnp.sqrt(s**2 + 0.25), rtol=1e-6)
    np.testing.assert_allclose(c_in, 1 / jnp.sqrt(s**2 + 0.25), rtol=1e-6)
    np.testing.assert_allclose(c_noise, jnp.log(s) / 4, rtol=1e-6)
    # unit-variance effective target: lambda(sigma) * c_out(sigma)^2 = 1
    np.testing.assert_allclose(edm.loss_weight(s) * c_out**2, 1.0, rtol=1e-5)
    # limits: pure skip at sigma -> 0, pure network output at sigma -> inf
    assert float(c_skip[0]) > 0.9999 and float(c_skip[-1]) < 1e-4
    # consistency shift: f(x, sigma_min) = x exactly
    cs, co, _, _ = edm.precond(jnp.float32(0.002), 0.5, sigma_min=0.002)
    assert float(cs) == 1.0 and float(co) == 0.0


def test_karras_grid_matches_paper():
    t = edm.karras_sigmas(18)
    paper = [80, 57.6, 40.8, 28.4, 19.4, 12.9, 8.40, 5.32, 3.26, 1.92, 1.09, 0.585, 0.296, 0.140, 0.060, 0.023, 0.0075, 0.002]
    np.testing.assert_allclose(t[:-1], paper, rtol=0.02)
    assert t[-1] == 0.0 and len(t) == 19


def test_heun18_calls_35_times_and_never_at_zero():
    calls = []

    def D(x, sigma):
        jax.debug.callback(lambda s: calls.append(float(s)), sigma)
        return 0.9 * x

    out = jax.jit(lambda z: edm.heun_sampler(D, z, edm.karras_sigmas(18)))(jnp.ones((2, 2)))
    out.block_until_ready()
    jax.effects_barrier()
    assert len(calls) == 35
    assert min(calls) > 0
    assert np.isclose(min(calls), 0.002, rtol=1e-5)
    assert edm.nfe_to_steps(35) == 18


def test_heun_with_exact_denoiser_reproduces_mixture():
    g = toy.GaussianMixture.ring()
    z = jax.random.normal(jax.random.PRNGKey(0), (2000, 2))
    ref = g.sample_np(1, 2000)[0]
    heun = np.asarray(edm.heun_sampler(g.denoiser, z, edm.karras_sigmas(18)))
    # A wrong sampler: starts from unit noise (forgets x = sigma_max z) -- collapses the modes.
    wrong = np.asarray(edm.heun_sampler(g.denoiser, z / 80.0, edm.karras_sigmas(18)))
    noise_floor = toy.energy_distance(g.sample_np(2, 2000)[0], ref)
    ed, ed_wrong = toy.energy_distance(heun, ref), toy.energy_distance(wrong, ref)
    assert ed < 3 * noise_floor + 1e-3, (ed, noise_floor)
    assert ed_wrong > 10 * ed, (ed, ed_wrong)


def test_exact_denoiser_is_posterior_mean():
    """Monte-Carlo check of the closed form at one (x, sigma)."""
    g = toy.GaussianMixture.grid()
    y, _ = g.sample_np(0, 400_000)
    sigma = 0.3
    x = y + sigma * np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    q = np.array([0.1, -0.2], np.float32)
    w = np.exp(-((x - q) ** 2).sum(1) / (2 * 0.02**2))  # kernel-weighted E[y | x ~ q]
    mc = (w[:, None] * y).sum(0) / w.sum()
    exact = np.asarray(g.denoiser(jnp.asarray(q[None]), sigma))[0]
    np.testing.assert_allclose(exact, mc, atol=0.02)


def test_flow_path_and_euler():
    x0, x1 = jnp.zeros((1, 3)), jnp.ones((1, 3))
    np.testing.assert_allclose(flow.interpolate(x0, x1, jnp.array([0.0])), x0)
    np.testing.assert_allclose(flow.interpolate(x0, x1, jnp.array([1.0])), x1)
    v = flow.velocity(x0, x1)
    out = flow.ode_sampler(lambda x, t: v, x0, 1)  # constant velocity: one Euler step lands on x1
    np.testing.assert_allclose(out, x1, atol=1e-6)
    with pytest.raises(ValueError):
        flow.ode_sampler(lambda x, t: v, x0, 2, solver="rk9")
