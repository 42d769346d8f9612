"""CrossFlow: the path and both samplers, the VE losses (KL closed form, symmetric CLIP loss),
the CFG derangement and guidance, latent arithmetic, and three trained runs: one pair (one
Euler step lands on the target), caption-to-image on digits (a classifier trained on real
digits; guidance raises its accuracy) and super-resolution (beats bicubic on held-out digits)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from genmod import crossflow as cf, crossflow_sample, flow, sample, train
from genmod.methods import crossflow
from tests import helpers

SIGMA = 1e-5


def test_path_endpoints_and_constant_velocity():
    k0, k1 = jax.random.split(jax.random.PRNGKey(0))
    z0, x1 = jax.random.normal(k0, (4, 8, 8, 1)), jax.random.normal(k1, (4, 8, 8, 1))
    at = lambda t: flow.interpolate(z0, x1, jnp.full(4, t), SIGMA)
    np.testing.assert_array_equal(at(0.0), z0)
    np.testing.assert_allclose(at(1.0), x1 + SIGMA * z0, atol=1e-6)
    v = flow.velocity(z0, x1, SIGMA)
    np.testing.assert_allclose(v, x1 - (1 - SIGMA) * z0, atol=1e-6)
    for t in (0.1, 0.5, 0.9):  # d psi / dt is the same everywhere on the path
        np.testing.assert_allclose((at(t + 0.05) - at(t - 0.05)) / 0.1, v, atol=2e-4)


def test_samplers_on_the_one_pair_field():
    """One pair (z0, x1): the optimal velocity is constant along the path, u(z, t) =
    (x1 - (1 - s) z) / (1 - (1 - s) t). One step of the CrossFlow Euler lands on x1 (to
    O(s)); Heun and textbook Euler follow the line exactly; the CrossFlow grid (evaluation
    times linspace(0, 1 - s, N), steps from linspace(s, 1, N + 1)) is not textbook Euler."""
    k0, k1 = jax.random.split(jax.random.PRNGKey(1))
    z0, x1 = jax.random.normal(k0, (3, 4, 4, 2)), jax.random.normal(k1, (3, 4, 4, 2))
    u = lambda z, t: (x1 - (1 - SIGMA) * z) / (1 - (1 - SIGMA) * t)
    np.testing.assert_allclose(cf.crossflow_euler(u, z0, 1, SIGMA), x1, atol=1e-4)
    for solver, n in (("euler", 5), ("heun", 3)):
        np.testing.assert_allclose(flow.ode_sampler(u, z0, n, solver), x1 + SIGMA * z0, atol=1e-4)
    # grid: integrate v(z, t) = t, i.e. sum_i t_i dt_i
    N = 7
    got = float(cf.crossflow_euler(lambda z, t: jnp.full_like(z, t), jnp.zeros(()), N, SIGMA))
    ref = float(np.sum(np.linspace(0, 1 - SIGMA, N) * np.diff(np.linspace(SIGMA, 1, N + 1))))
    left = float(np.sum(np.linspace(0, 1, N + 1)[:-1] / N))
    assert abs(got - ref) < 1e-6 and abs(got - left) > 0.01


def test_kl_matches_the_closed_form():
    k0, k1 = jax.random.split(jax.random.PRNGKey(2))
    mu, logvar = 2 * jax.random.normal(k0, (5, 3, 3, 2)), jax.random.normal(k1, (5, 3, 3, 2))
    m, s = np.asarray(mu, np.float64), np.exp(0.5 * np.asarray(logvar, np.float64))
    ref = (np.log(1 / s) + (s**2 + m**2) / 2 - 0.5).reshape(5, -1).sum(1)  # KL(N(m, s^2) || N(0, 1))
    np.testing.assert_allclose(cf.kl(mu, logvar), ref, rtol=1e-5)
    # the official code's variant: mu^2 -> (0.3 mu)^6, cheaper for |mu| < 0.3^-1.5, dearer above
    off = cf.kl(mu, logvar, "official")
    np.testing.assert_allclose(off, ref + 0.5 * ((0.3 * m) ** 6 - m**2).reshape(5, -1).sum(1), rtol=1e-5)
    z = jnp.zeros((1, 4))
    kl = lambda m, kind="standard": float(cf.kl(z + m, z, kind)[0])
    assert kl(2.0, "official") < kl(2.0) and kl(8.0) < kl(8.0, "official")
    with pytest.raises(ValueError, match="unknown KL"):
        cf.kl(mu, logvar, "paper")


def test_clip_loss_random_and_aligned():
    B, D = 64, 4096
    ka, kb = jax.random.split(jax.random.PRNGKey(3))
    a, b = jax.random.normal(ka, (B, D)), jax.random.normal(kb, (B, D))
    raw = cf.logit_scale(jnp.float32(math.log(1 / 0.07)), "raw")  # the code's effective scale, ~2.66
    assert abs(float(cf.clip_loss(a, b, raw)) - math.log(B)) < 0.02
    # equals 0.5 (CE(S, I) + CE(S^T, I)) with S = scale * cosine similarities
    s = 10.0 * (a / jnp.linalg.norm(a, axis=1, keepdims=True)) @ (b / jnp.linalg.norm(b, axis=1, keepdims=True)).T
    ce = lambda s: optax.softmax_cross_entropy_with_integer_labels(s, jnp.arange(B)).mean()
    np.testing.assert_allclose(cf.clip_loss(a, b, 10.0), 0.5 * (ce(s) + ce(s.T)), rtol=1e-5)
    # aligned, well-separated pairs at the paper's learnable temperature (exp, capped at 100)
    e = jnp.eye(B, D) * 3.0
    scale = cf.logit_scale(jnp.float32(10.0), "exp")
    assert float(scale) == 100.0 and float(cf.clip_loss(e, e + 0.01 * a / 64, scale)) < 1e-6
    assert float(cf.clip_loss(e, e, raw)) > 1.0  # the raw scale cannot reach 0 (pitfall 8)


def test_derangement_within_the_unconditional_subset():
    B = 16
    ids = jnp.arange(B, dtype=jnp.float32)[:, None] * jnp.ones((B, 3))
    d = jax.jit(cf.derange, static_argnums=2)
    fracs = []
    for seed in range(100):
        out, null = d(jax.random.PRNGKey(seed), ids, 0.3)
        got, null = np.asarray(out[:, 0]).astype(int), np.asarray(null)
        fracs.append(null.mean())
        assert out.shape == ids.shape and null.sum() != 1
        np.testing.assert_array_equal(got[~null], np.arange(B)[~null])  # conditional: untouched
        assert np.all(got[null] != np.arange(B)[null])  # no unconditional sample keeps its target
        assert sorted(got[null]) == sorted(np.arange(B)[null])  # targets stay within the subset
    assert abs(np.mean(fracs) - 0.3) < 0.03
    out, null = d(jax.random.PRNGKey(0), ids, 0.0)
    assert not np.asarray(null).any() and np.array_equal(np.asarray(out), np.asarray(ids))


def test_guided_velocity_and_latent_arithmetic():
    F = lambda z, t, null: jnp.where(null[:, None], 1.0, 3.0) * z + t  # v_c = 3z + t, v_u = z + t
    z = jnp.arange(1.0, 5.0).reshape(2, 2)
    np.testing.assert_allclose(cf.guided(F, 2.5)(z, 0.5), z + 0.5 + 2.5 * 2 * z)
    np.testing.assert_allclose(cf.guided(F, 1.0)(z, 0.5), 3 * z + 0.5)
    k = jax.random.split(jax.random.PRNGKey(4), 3)
    za, zadd, zsub = (3 * jax.random.normal(ki, (2, 4, 4, 1)) + 1 for ki in k)
    out = cf.arithmetic(za, zadd, zsub, 0.5)
    np.testing.assert_allclose(out.mean((1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out).reshape(2, -1).std(1, ddof=1), 1, rtol=1e-5)
    e = np.asarray(za + 0.5 * (zadd - zsub)).reshape(2, -1)
    np.testing.assert_allclose(np.asarray(out).reshape(2, -1), (e - e.mean(1, keepdims=True)) / e.std(1, ddof=1, keepdims=True), rtol=1e-4, atol=1e-5)
    lz = cf.lerp(za, zadd, 5)
    np.testing.assert_allclose(lz[0], za[0])
    np.testing.assert_allclose(lz[-1], zadd[0], rtol=1e-6)
    np.testing.assert_allclose(lz[2], 0.5 * (za[0] + zadd[0]), rtol=1e-5, atol=1e-6)


def test_bad_settings_raise_one_line_value_errors(tmp_path):
    def make(**kw):
        c = helpers.config("crossflow_captions:smoke")
        with c.unlocked():
            for k, v in kw.items():
                node, (*path, leaf) = c, k.split("__")
                for p in path:
                    node = node[p]
                node[leaf] = v
        return crossflow.Method(c)

    for kw, msg in ((dict(crossflow__source="audio"), "crossflow.source"),
                    (dict(crossflow__kl="paper"), "crossflow.kl"),
                    (dict(crossflow__solver="rk4"), "crossflow.solver"),
                    (dict(data__num_classes=0), "data.num_classes"),
                    (dict(crossflow__source="image", crossflow__factor=3), "does not divide")):
        with pytest.raises(ValueError, match=msg):
            make(**kw)
    with pytest.raises(ValueError, match="crossflow.source='text'"):
        make(crossflow__source="class").condition(captions=["a handwritten one"])
    # precomputed language-model features: looked up by caption, unknown captions refused
    caps = np.array([[f"digit {i}"] for i in range(10)])
    feat = np.random.default_rng(0).standard_normal((10, 1, 6, 12)).astype(np.float32)
    np.savez(tmp_path / "f.npz", features=feat, captions=caps)
    m = make(crossflow__features=str(tmp_path / "f.npz"))
    np.testing.assert_array_equal(m.condition(captions=["digit 7", "digit 2"])["seq"], feat[[7, 2], 0])
    with pytest.raises(ValueError, match="no precomputed features"):
        m.condition(captions=["a handwritten seven"])


# -- trained runs (the loop, tiny nets, digits) -------------------------------------------------
FAST = dict(sample_every=0, num_preview=0, mesh={"data": 1})


def _train(name, steps, workdir, **kw):
    c = helpers.config(name, total_steps=steps, ckpt_every=steps, log_every=steps, **FAST, **kw)
    train.train(c, str(workdir), log=lambda *_: None)
    _, run, state, _ = sample.load_workdir(str(workdir))
    return run.method, run.method.sample_params(state)


def _digits():
    d = load_digits()
    return np.round(d.images * (255 / 16)).astype(np.uint8), d.target


def _pixels(x):
    """Samples in [-1, 1] -> the classifier's input (digits' 0..16 grey levels, flattened)."""
    return (np.clip(np.round((np.asarray(x) + 1) * 127.5), 0, 255) / 255 * 16).reshape(len(x), -1)


@pytest.mark.slow
def test_one_pair_one_euler_step_lands_on_the_target(tmp_path):
    """One (caption, image) pair and a deterministic encoder: every training path is the same
    line z0 -> x1, whose velocity is constant, so one step of the sampler lands on x1."""
    img, lab = _digits()
    np.savez(tmp_path / "one.npz", x=img[7:8], y=lab[7:8])  # "a handwritten seven" and one seven
    x1 = jnp.asarray(img[7:8, :, :, None] / 127.5 - 1, jnp.float32)
    m, p = _train("crossflow_captions", 200, tmp_path / "wd", data__source=f"npz:{tmp_path}/one.npz",
                  crossflow__stochastic=False, crossflow__t_dist="uniform")  # the step evaluates v at t=0
    cond, keys = m.condition(label=np.full(4, 7)), train.seed_keys(np.arange(4))
    err = lambda params: float(jnp.abs(m.generate(params, cond, keys, 1.0, 1) - x1).mean())
    untrained = m.init(jax.random.PRNGKey(0), {"x": x1, "label": jnp.array([7])}).ema
    one, base, dist = err(p), err(untrained), float(jnp.abs(m.encode(p, cond, keys) - x1).mean())
    print(f"one pair, one Euler step: mean |x - x1| {one:.4f} from |z0 - x1| {dist:.3f} (untrained {base:.4f})")
    # measured: 0.029 from 0.73 (untrained 1.01); logit-normal t (rare near 0): 0.096
    assert one < 0.07 and one < dist / 8


@pytest.mark.slow
@pytest.mark.optimized  # 600 steps: XLA's optimisations pay for their compile (138 -> 97 s)
def test_caption_to_image_guidance_and_latent_cli(tmp_path):
    m, p = _train("crossflow_captions", 600, tmp_path)
    img, lab = _digits()
    clf = LogisticRegression(max_iter=2000).fit(_pixels(img / 127.5 - 1), lab)  # on real digits
    y = np.repeat(np.arange(10), 30)
    gen = jax.jit(lambda p, c, k, w: m.generate(p, c, k, w))  # w traced: one compile for all w
    cond, keys = m.condition(label=y), train.seed_keys(np.arange(len(y)))
    acc = {w: float((clf.predict(_pixels(gen(p, cond, keys, jnp.float32(w)))) == y).mean()) for w in (1.0, 3.0)}
    print(f"caption -> digit accuracy: w=1 {acc[1.0]:.3f}, w=3 {acc[3.0]:.3f} (chance 0.1)")
    assert acc[1.0] > 0.5 and acc[3.0] > acc[1.0] + 0.03

    # command line: interpolation keeps its endpoints; "three" + "eight" - "three" draws eights
    def cli(name, *args):
        out = tmp_path / f"{name}.png"
        assert crossflow_sample.main(["--workdir", str(tmp_path), "--num", "10", "--out", str(out), *args]) == 0
        return np.load(tmp_path / f"{name}.npz")["samples"].astype(int)

    three, eight = cli("three", "--caption", "a handwritten three"), cli("eight", "--caption", "a handwritten eight")
    lerp = cli("lerp", "--caption", "a handwritten three", "--interp", "a handwritten eight")
    assert np.abs(lerp[0] - three[0]).max() <= 1 and np.abs(lerp[-1] - eight[0]).max() <= 1
    assert np.abs(lerp[5] - three[0]).mean() > 10 and np.abs(lerp[5] - eight[0]).mean() > 10
    arith = cli("arith", "--caption", "a handwritten three", "--add", "a handwritten eight", "--sub", "a handwritten three")
    pred = lambda u: clf.predict((u / 255 * 16).reshape(len(u), -1))
    print(f"CLI: three -> {pred(three)}, three + eight - three -> {pred(arith)}")
    assert (pred(arith) == 8).mean() >= 0.6 and (pred(three) == 3).mean() >= 0.6
    assert crossflow_sample.main(["--workdir", str(tmp_path / "nothing"), "--caption", "x", "--out", str(tmp_path / "x.png")]) == 2


@pytest.mark.slow
def test_super_resolution_beats_bicubic_on_held_out_digits(tmp_path):
    img, lab = _digits()
    np.savez(tmp_path / "d.npz", x_train=img[:1500], y_train=lab[:1500], x_test=img[1500:], y_test=lab[1500:])
    m, p = _train("crossflow_sr", 200, tmp_path / "wd", data__source=f"npz:{tmp_path}/d.npz")
    hr = jnp.asarray(img[1500:, :, :, None] / 127.5 - 1, jnp.float32)
    lr = crossflow.down(hr, m.config.crossflow.factor)
    psnr = lambda x: float(jnp.mean(10 * jnp.log10(4.0 / jnp.mean((jnp.clip(x, -1, 1) - hr) ** 2, (1, 2, 3)))))
    keys = train.seed_keys(np.arange(len(hr)))
    sr, bicubic = psnr(m.generate(p, m.condition(image=lr), keys)), psnr(crossflow.up(lr, hr.shape[1:]))
    print(f"2x super-resolution PSNR on 297 held-out digits: CrossFlow {sr:.2f} dB, bicubic {bicubic:.2f} dB")
    assert sr > bicubic + 0.8
