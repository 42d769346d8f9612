"""MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling"), in the paper's
convention: z_t = (1 - t) x + t e (data at t = 0, noise at t = 1), v = e - x, and a network
u_theta(z_t, r, t) for the average velocity u = (z_t - z_r) / (t - r), trained from scratch with
the MeanFlow identity u = v - (t - r) du/dt as the (stop-gradient) target.

* (t, r): two logit-normal draws, t = max, r = min; a fraction ``1 - ratio`` gets r = t (plain
  flow matching). du/dt is the total derivative along the flow: ``jax.jvp`` with tangents
  (dz, dr, dt) = (v, 0, 1), exact in forward mode through any backbone (attention included).
* Adaptive weight w = sg(1 / (||Delta||^2 + c)^p) on the summed squared error (p = 1 default).
* Class-conditional runs (num_classes > 0): CFG in training (eq. 19-21): the target uses
  v~ = omega v + kappa u(z_t, t, t | c) + (1 - omega - kappa) u(z_t, t, t | null), the two
  network terms stop-gradient at the current weights; a ``class_drop`` fraction trains the null
  class (zero one-hot) on plain v. Sampling is then 1-NFE with the guidance built in.
* ``v_hat="batch"``: v in the target is the minibatch's marginal velocity E[e - x | z_t]
  (``batch_velocity``; Xu et al. 2023's stable target field, as cm_toy's CT) instead of the one
  sample's e - x: on the random-mixture family it cuts the 1-NFE error 1.7-2.6x (docs/benchmarks.md).
* ``target="batch_flow"``: no JVP; the target is the minibatch's own average velocity
  (z_t - z_r) / (t - r), Heun steps of the batch's probability-flow ODE (``batch_flow``): the
  identity integrated exactly for the batch, nothing of the network bootstrapped. On the 2-D
  random-mixture family this is what holds at 1 NFE (meanflow_toy); with a batch of 64 images
  the batch posterior is nearly one-hot below high noise, so image configs keep the identity.
* Sampling: z_r = z_t - (t - r) u(z_t, r, t) on a uniform grid 1 -> 0; 1 step = 1 NFE.

The network: genmod's backbones take one noise label, so ``AverageVelocity`` gives the backbone
t as its noise label and h = t - r (the paper's preferred (t, t - r) input) through its label
input as a sinusoidal embedding, appended to the one-hot class (the backbone is built with
``label_dim = num_classes + h_dim``). Every backbone in genmod.nets adds a learned linear map of
its labels to the time embedding, which is what the official U-Net does with its concatenated
[emb(t), emb(h)] (up to the rank of the first mapping layer); no backbone code changes. Time
inputs and their embedding are float32 whatever the backbone's dtype. Do not set the
backbone's ``label_dropout``: it would drop h too.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from genmod import augment, config_lib, method, nets
from genmod.methods import cm
from genmod.nets.mlp import fourier_embedding

AUGMENT_TAG = 0x617567  # state.key(AUGMENT_TAG): the augmentation's own stream (as edm)


def defaults():
    """The ``config.meanflow`` block; paper defaults (ImageNet, Table 1 / 4): lognorm(-0.4, 1.0),
    25% of pairs with r != t, p = 1, c = 1e-3; CFG omega = 1, kappa = 0.5, class drop 0.1
    (official JAX code's defaults)."""
    return ml_collections.ConfigDict(dict(
        P_mean_t=-0.4, P_std_t=1.0, P_mean_r=-0.4, P_std_r=1.0,  # logit-normal t and r
        ratio=0.25,                      # fraction of pairs with r != t
        tr_sampler="v0",                 # v0: (t, r) = sorted draws (paper); v1: r = min(t, r) (py-meanflow v1)
        norm_p=1.0, norm_eps=1e-3,       # adaptive weight 1 / (||Delta||^2 + c)^p
        omega=1.0, kappa=0.5, class_drop=0.1,  # CFG in training (num_classes > 0 only)
        h_dim=64, h_scale=100.0,         # embedding of h = t - r (spread over the sinusoid bands)
        augment_p=0.0,                   # EDM's non-leaky augmentation (net.augment_dim 9)
        v_hat="sample",                  # sample: v = e - x (paper); batch: the minibatch's marginal velocity
        target="identity",               # identity: v - (t - r) du/dt by JVP (paper); batch_flow: see batch_flow
        flow_steps=8,                    # batch_flow: Heun steps of the minibatch's ODE from t to r
    ))


def _bcast(v, x):
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


class AverageVelocity(nn.Module):
    """u_theta(z, r, t) = F(z, c_noise = t, [one-hot class, psi(t - r)]); psi is scaled to unit
    norm, the scale of a one-hot label each backbone's label path is initialised for."""

    net: nn.Module
    num_classes: int = 0
    h_dim: int = 64
    h_scale: float = 100.0

    def __call__(self, z, r, t, labels=None, *, train=False, **kw):
        B = z.shape[0]
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (B,))
        r = jnp.broadcast_to(jnp.asarray(r, jnp.float32), (B,))
        psi = fourier_embedding((t - r) * self.h_scale, self.h_dim) * math.sqrt(2.0 / self.h_dim)
        if self.num_classes:
            labels = jnp.zeros((B, self.num_classes), jnp.float32) if labels is None else labels.astype(jnp.float32)
            psi = jnp.concatenate([labels, psi], -1)
        return self.net(z, t, psi, train=train, **kw).astype(z.dtype)


def sample_tr(key, n, c):
    """(t, r), t >= r, from two logit-normal draws; r = t with probability 1 - ratio. ``v0``
    (paper): t, r = max, min of the draws; ``v1`` (official CIFAR-10 code's improved sampler,
    r's own distribution near 0): t is the first draw and r = min(t, second draw)."""
    k_t, k_r, k_m = jax.random.split(key, 3)
    a = jax.nn.sigmoid(c.P_mean_t + c.P_std_t * jax.random.normal(k_t, (n,)))
    b = jax.nn.sigmoid(c.P_mean_r + c.P_std_r * jax.random.normal(k_r, (n,)))
    t, r = (jnp.maximum(a, b), jnp.minimum(a, b)) if c.tr_sampler == "v0" else (a, jnp.minimum(a, b))
    return t, jnp.where(jax.random.uniform(k_m, (n,)) < c.ratio, r, t)


def meanflow_target(u, z, r, t, v):
    """(u(z, r, t), sg(v - (t - r) du/dt)): du/dt = d/dt u(z_t, r, t) along dz/dt = v, one
    forward-mode JVP with tangents (v, 0, 1); one call, so one dropout mask for both."""
    u_pred, dudt = jax.jvp(u, (z, r, t), (v, jnp.zeros_like(r), jnp.ones_like(t)))
    return u_pred, jax.lax.stop_gradient(v - _bcast(t - r, z) * dudt)


def adaptive_loss(u_pred, u_tgt, p=1.0, c=1e-3):
    """(w ||Delta||^2 with w = sg(1 / (||Delta||^2 + c)^p), ||Delta||^2), per sample."""
    d2 = ((u_pred - u_tgt) ** 2).reshape(u_pred.shape[0], -1).sum(-1)
    return d2 / jax.lax.stop_gradient((d2 + c) ** p), d2


def batch_velocity(x, z, t, labels=None):
    """The marginal velocity E[e - x | z_t] when x is uniform over the minibatch's rows (Xu et
    al. 2023's stable target field): (z_t - E[x | z_t]) / t with the batch posterior of
    ``cm.batch_posterior_mean`` at sigma = t / (1 - t), on y = z_t / (1 - t)."""
    one_m = jnp.maximum(1 - t, 1e-6)
    x_hat = cm.batch_posterior_mean(x, z / _bcast(one_m, z), t / one_m, labels)
    return (z - x_hat) / _bcast(t, z)


def batch_flow(x, z, r, t, steps=8, rho=7.0):
    """The minibatch's own average velocity (z_t - z_r) / (t - r): ``steps`` Heun steps of its
    probability-flow ODE dz/dt = E[e - x | z_t] (``batch_velocity``) from t down to r, spaced
    evenly in t^(1/rho) (EDM's spacing: fine near the data, where the batch posterior sharpens);
    v at z_t where r = t. The regression target of ``target=batch_flow``: the MeanFlow identity
    integrated exactly over [r, t] for the batch, so no du/dt of the network is bootstrapped.
    Unconditional (a labelled batch's posterior would need a per-class flow and CFG)."""
    def v(z, t):
        return batch_velocity(x, z, t)

    def at(k):  # the batch posterior's softmax is stiff below t ~ 1e-4, where z no longer moves
        a, b = t ** (1 / rho), jnp.maximum(r, 1e-4) ** (1 / rho)
        return (a + k / steps * (b - a)) ** rho

    def step(k, z):
        a, b = at(k), at(k + 1)
        d = v(z, a)
        z_e = z + _bcast(b - a, z) * d
        return z + _bcast(b - a, z) * 0.5 * (d + v(z_e, b))

    z_r = jax.lax.fori_loop(0, steps, step, z)
    h = t - r
    return jnp.where(_bcast(h > 1e-4, z), (z - z_r) / _bcast(jnp.maximum(h, 1e-4), z), v(z, t))


def meanflow_sample(u, z, steps=1):
    """z_r = z_t - (t - r) u(z_t, r, t) on t = 1, ..., 0 (``steps`` network evaluations)."""
    ts = [1.0 - i / steps for i in range(steps + 1)]
    for t, r in zip(ts[:-1], ts[1:]):
        z = z - (t - r) * u(z, jnp.full(z.shape[:1], r), jnp.full(z.shape[:1], t))
    return z


class Method(method.Method):
    nfe_unit = "network evaluations"

    def __init__(self, config, frozen=None):
        super().__init__(config, frozen)
        c = self.c = config.meanflow
        self.shape, self.num_classes = tuple(config.data.shape), config.data.num_classes
        backbone = nets.build(config.net, self.shape, self.num_classes + c.h_dim)
        self.u = AverageVelocity(backbone, self.num_classes, c.h_dim, c.h_scale)
        self.tx, self.lr = method.make_optimizer(config.optim.net, config.batch_size, config.total_steps)
        if not 0 <= c.ratio <= 1 or c.norm_eps <= 0 or c.h_dim < 2 or c.h_dim % 2:
            raise config_lib.ConfigError(f"meanflow: need 0 <= ratio <= 1, norm_eps > 0, even h_dim >= 2; got "
                                         f"{c.ratio}, {c.norm_eps}, {c.h_dim}")
        if c.get("v_hat", "sample") not in ("sample", "batch"):
            raise config_lib.ConfigError(f"unknown meanflow.v_hat {c.v_hat!r}: use sample or batch")
        if c.get("target", "identity") not in ("identity", "batch_flow"):
            raise config_lib.ConfigError(f"unknown meanflow.target {c.target!r}: use identity or batch_flow")
        if c.get("target", "identity") == "batch_flow" and self.num_classes:
            raise config_lib.ConfigError("meanflow.target=batch_flow is unconditional: CFG-in-training needs the "
                                         "identity target (meanflow.target=identity)")
        if c.tr_sampler not in ("v0", "v1"):
            raise config_lib.ConfigError(f"unknown meanflow.tr_sampler {c.tr_sampler!r}: use v0 or v1")
        if c.augment_p and config.net.get("augment_dim", 0) != augment.LABEL_DIM:
            raise config_lib.ConfigError(f"meanflow.augment_p={c.augment_p} feeds {augment.LABEL_DIM} augmentation "
                                         f"labels to the network: set net.augment_dim={augment.LABEL_DIM}")

    def init(self, rng, batch):
        x = batch["x"]
        p = self.u.init({"params": rng}, x, jnp.zeros(x.shape[:1]), jnp.ones(x.shape[:1]),
                        method.onehot(batch, self.num_classes))["params"]
        return method.new_state(rng, {"net": p}, {"net": self.tx}, ema=("net",))

    def rules(self):
        return {"train": self.train_step}

    def u_fn(self, params, labels=None, dropout_key=None, aug=None):
        """u(z, r, t); with a dropout key, train mode with exactly that mask."""
        kw = {"rngs": {"dropout": dropout_key}} if dropout_key is not None else {}
        if aug is not None:
            kw["augment_labels"] = aug
        return lambda z, r, t: self.u.apply({"params": params}, z, r, t, labels, train=dropout_key is not None, **kw)

    def guided_velocity(self, params, z, t, v, labels, key):
        """CFG in training: (v~, labels with the dropped ones null); dropped samples keep v."""
        c = self.c
        u_null = self.u_fn(params, None)(z, t, t)
        u_cond = self.u_fn(params, labels)(z, t, t) if c.kappa else 0.0
        v_g = jax.lax.stop_gradient(c.omega * v + c.kappa * u_cond + (1 - c.omega - c.kappa) * u_null)
        drop = jax.random.uniform(key, (z.shape[0],)) < c.class_drop
        return jnp.where(_bcast(drop, v), v, v_g), jnp.where(drop[:, None], 0.0, labels)

    def train_step(self, state, batch, frozen):
        c, cfg = self.c, self.config
        k_tr, k_e, k_drop, k_cfg = jax.random.split(state.key(), 4)
        x, labels, aug = batch["x"], method.onehot(batch, self.num_classes), None
        if c.augment_p:
            x, aug = augment.augment(state.key(AUGMENT_TAG), x, c.augment_p)
        t, r = sample_tr(k_tr, x.shape[0], c)
        e = jax.random.normal(k_e, x.shape)
        z, v = (1 - _bcast(t, x)) * x + _bcast(t, x) * e, e - x
        flow = c.get("target", "identity") == "batch_flow"
        if flow:  # the regression target, fixed before the network is called
            v = batch_flow(x, z, r, t, c.flow_steps)
        elif c.get("v_hat", "sample") == "batch":
            v = batch_velocity(x, z, t, labels)

        if labels is not None:  # guidance from the current weights, no gradient
            v, labels = self.guided_velocity(state.params["net"], z, t, v, labels, k_cfg)

        def loss_fn(p):
            if flow:
                u_pred, u_tgt = self.u_fn(p, labels, k_drop, aug)(z, r, t), v
            else:
                u_pred, u_tgt = meanflow_target(self.u_fn(p, labels, k_drop, aug), z, r, t, v)
            loss, d2 = adaptive_loss(u_pred, u_tgt, c.norm_p, c.norm_eps)
            return loss.mean(), d2.mean()

        (loss, d2), g = jax.value_and_grad(loss_fn, has_aux=True)(state.params["net"])
        beta = method.ema_decay(state.step, cfg.batch_size, cfg.ema.halflife_img, cfg.ema.rampup)
        state, m = method.apply_update(state, "net", g, self.tx, self.lr, beta)
        return method.finish_step(state, {"meanflow/loss": loss, "meanflow/sq_err": d2, **m})

    def sample(self, params, keys, frozen, nfe=None):
        z = jax.vmap(lambda k: jax.random.normal(k, self.shape))(keys)
        labels = method.sample_labels(keys, self.num_classes)
        return meanflow_sample(self.u_fn(params["net"], labels), z, nfe or self.config.sample.nfe)
