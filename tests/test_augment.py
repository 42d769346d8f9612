"""EDM's non-leaky augmentation (genmod.augment) against NVlabs/edm's AugmentPipe with the same
parameters forced on both sides, its draws and labels, and its wiring into the EDM method."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genmod import augment, config_lib, edm
from genmod.methods import edm as edm_method
from tests import helpers

PEERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "peers", "edm")
X = np.random.default_rng(0).uniform(-1, 1, (6, 32, 32, 3)).astype(np.float32)


def edm_pipe(monkeypatch, x, prm):
    """NVlabs/edm's ``AugmentPipe`` with train.py's --augment options on NHWC ``x``, its torch
    draws replaced (in the order it makes them) by values that reproduce ``prm``."""
    torch = pytest.importorskip("torch")
    if not os.path.isdir(PEERS):
        pytest.skip("needs ../shared/peers/edm")
    monkeypatch.syspath_prepend(PEERS)
    from training.augment import AugmentPipe

    P = {k: torch.tensor(np.asarray(v, np.float32)) for k, v in prm.items()}
    on, unit = torch.zeros(len(x)), lambda a: (a / np.pi + 1) / 2  # gate passed; angle -> U[0, 1)
    queue = [("randint", P["xflip"].long()), ("rand", on), ("randint", P["yflip"].long()), ("rand", on),
             ("randn", P["scale"]), ("rand", on), ("rand", unit(P["rotate"])), ("rand", on),
             ("randn", P["aniso"]), ("rand", unit(P["aniso_angle"])), ("rand", on), ("rand", on),
             ("randn", torch.stack([P["tx"], P["ty"]])), ("rand", on)]

    def forced(name):
        def draw(*args, device=None):
            kind, v = queue.pop(0)
            assert kind == name
            return v.reshape(args[-1])
        return draw
    for name in ("rand", "randn", "randint"):
        monkeypatch.setattr(torch, name, forced(name))
    pipe = AugmentPipe(0.12, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1)
    out, labels = pipe(torch.tensor(x.transpose(0, 3, 1, 2)))
    assert not queue
    return out.numpy().transpose(0, 2, 3, 1), labels.numpy()


@pytest.mark.parametrize("p", [1.0, 0.12])
def test_matches_edm_augment_pipe(monkeypatch, p):
    prm = {k: np.asarray(v) for k, v in augment.draw(jax.random.PRNGKey(1), len(X), p).items()}
    ref, ref_labels = edm_pipe(monkeypatch, X, prm)
    out = np.asarray(jax.jit(augment.apply)(jnp.asarray(X), prm))
    assert np.abs(out - ref).max() < 3e-5  # float32 rounding of the sampling coordinates (measured 1.2e-5)
    np.testing.assert_allclose(np.asarray(augment.labels(prm)), ref_labels, atol=1e-6)


def test_matches_edm_where_its_padding_is_too_small(monkeypatch):
    """Large transforms push EDM's batch margin to its clamp (H - 1): samples then fall outside
    its reflect padding and read zeros, which the masked canvas reproduces (2e-5; unmasked: 5.3e-3)."""
    r = np.random.default_rng(1)
    prm = {k: np.zeros(4, np.float32) for k in augment.PARAMS}
    for k, s in (("scale", 4), ("aniso", 4), ("tx", 2), ("ty", 2)):
        prm[k] = r.normal(0, s, 4).astype(np.float32)
    prm["rotate"], prm["aniso_angle"] = r.uniform(-3, 3, (2, 4)).astype(np.float32)
    prm = {k: np.concatenate([v, np.zeros(2, np.float32)]) for k, v in prm.items()}  # + 2 left alone
    ref, _ = edm_pipe(monkeypatch, X, prm)
    out = np.asarray(jax.jit(augment.apply)(jnp.asarray(X), prm))
    assert np.abs(out - ref).max() < 1e-4
    assert np.abs(out[4:] - X[4:]).max() < 1e-6  # no transform drawn: the filtered warp gives the image back


def test_p0_is_the_identity_and_a_key_fixes_the_result():
    x = jnp.asarray(X[:, :8, :8])
    y, lab = augment.augment(jax.random.PRNGKey(0), x, 0.0)
    assert y is x and lab.shape == (6, augment.LABEL_DIM) and not np.asarray(lab).any()
    f = jax.jit(augment.augment, static_argnums=2)
    a, b, c = f(jax.random.PRNGKey(3), x, 0.5), f(jax.random.PRNGKey(3), x, 0.5), f(jax.random.PRNGKey(4), x, 0.5)
    helpers.assert_trees_equal(a, b)
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


def test_draw_probabilities_and_zero_labels_without_augmentation():
    """EDM's gates: x-flip a fair coin whenever p > 0 (multiplier 1e8), y-flip p / 2, the other
    four p each (translation x and y together), the aniso frame rotated half the time; labels
    are zero exactly for images drawn no transform (identity matrix, no flip)."""
    n, p = 20000, 0.12
    prm = {k: np.asarray(v) for k, v in augment.draw(jax.random.PRNGKey(0), n, p).items()}
    rate = {k: (v != 0).mean() for k, v in prm.items()}
    for k, want in dict(xflip=0.5, yflip=p / 2, scale=p, rotate=p, aniso=p, aniso_angle=0.5, tx=p).items():
        assert abs(rate[k] - want) < 4 * np.sqrt(want * (1 - want) / n), (k, rate[k])
    np.testing.assert_array_equal(prm["tx"] != 0, prm["ty"] != 0)
    lab = np.asarray(augment.labels(prm))
    none = ~lab.any(1)
    G = np.asarray(augment.inverse_matrix(prm, 32, 32))
    ident = np.abs(G - np.eye(3)).max((1, 2)) < 1e-6
    np.testing.assert_array_equal(none, ident & (prm["xflip"] == 0) & (prm["yflip"] == 0))
    assert abs(none.mean() - 0.5 * (1 - p / 2) * (1 - p) ** 4) < 0.015


class TinyNet(nn.Module):
    """A backbone with EDM's augment-label input, small enough to compile in a second."""
    augment_dim: int = 0

    @nn.compact
    def __call__(self, x, noise_labels, class_labels=None, augment_labels=None, *, train=False):
        aug = jnp.zeros((x.shape[0], self.augment_dim)) if augment_labels is None else augment_labels
        h = nn.Conv(x.shape[-1], (3, 3))(x) + nn.Dense(x.shape[-1])(aug)[:, None, None]
        return nn.Dropout(0.5, deterministic=not train)(h + noise_labels[:, None, None, None])


def tiny_net(shape, num_classes, **kw):
    return TinyNet(**kw)


def test_edm_trains_on_augmented_images_and_samples_with_zero_labels():
    c = helpers.config("edm_cifar10:smoke", batch_size=6)
    with c.unlocked():
        c.net = config_lib.ConfigDict(dict(arch="tests.test_augment:tiny_net", augment_dim=9))
    m = edm_method.Method(c)
    b = {"x": jnp.asarray(X)}
    s = jax.jit(m.init)(jax.random.PRNGKey(0), b)

    @jax.jit
    def step_and_reference(s):  # the step's loss, and EDM's loss on augmented images and their labels
        y, aug = augment.augment(s.key(edm_method.AUGMENT_TAG), b["x"], c.edm.augment_p)
        k_loss, k_drop = jax.random.split(s.key())
        D = lambda x, sigma: m.D.apply({"params": s.params["net"]}, x, sigma, None, train=True,  # noqa: E731
                                       rngs={"dropout": k_drop}, augment_labels=aug)
        want = edm.edm_loss(D, y, k_loss, c.edm.P_mean, c.edm.P_std, c.edm.sigma_data).mean()
        return m.train_step(s, b, {})[1]["train/loss"], want, aug
    got, want, aug = step_and_reference(s)
    assert np.asarray(aug).any() and not np.asarray(aug).all(1).any()
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    # sampling (and any teacher) passes zero labels; the drawn ones change the output
    x, sig = jnp.asarray(X), jnp.full((6,), 2.0)
    out = lambda a: np.asarray(m.D.apply({"params": s.params["net"]}, x, sig, None, augment_labels=a))  # noqa: E731
    np.testing.assert_array_equal(np.asarray(m.denoiser(s.params["net"])(x, sig)), out(jnp.zeros((6, 9))))
    assert np.abs(out(aug) - out(jnp.zeros((6, 9)))).max() > 1e-3


def test_edm_cifar10_runs_edm_augmentation_and_bad_settings_are_one_line():
    c = config_lib.load("edm_cifar10")
    assert (c.edm.augment_p, c.net.augment_dim, c.net.dropout) == (0.12, 9, 0.13)
    for over, msg in ((dict(net__augment_dim=0), "set net.augment_dim=9"),
                      (dict(edm__augment_p=1.5), "edm.augment_p must be a probability in [0, 1], got 1.5")):
        with pytest.raises(config_lib.ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            edm_method.Method(helpers.config("edm_cifar10:smoke", **over))
