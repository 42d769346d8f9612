"""sCM: continuous-time consistency models (Lu & Song 2024, "Simplifying, Stabilizing and Scaling
Continuous-Time Consistency Models"): sCT (``scm.mode=sct``, from data) and sCD (``scd``, from a
frozen EDM teacher), in TrigFlow.

TrigFlow: x_t = cos(t) x0 + sin(t) z, z ~ N(0, sigma_d^2 I), t in [0, pi/2] (EDM's sigma =
sigma_d tan t, x_t = cos(t) x_EDM); PF-ODE dx_t/dt = sigma_d F(x_t / sigma_d, t); consistency
function f(x_t, t) = cos(t) x_t - sin(t) sigma_d F_theta(x_t / sigma_d, c_noise(t)).

Training (the paper's Algorithm 1): t = arctan(e^tau / sigma_d), tau ~ N(P_mean, P_std^2);
dx_t/dt = cos(t) z - sin(t) x0 (sCT) or the teacher's (cos(t) x_t - D(x_t / cos t; sigma)) /
sin(t) (sCD); the tangent
    g = -cos^2(t) (sigma_d F^- - dx_t/dt) - r cos(t) sin(t) (x_t + sigma_d dF^-/dt),
with cos(t) sin(t) dF^-/dt from one forward-mode ``jax.jvp`` with tangents (cos t sin t dx_t/dt,
cos t sin t) (exact, no finite differences; F^- = stop_gradient(F_theta), same dropout mask),
r ramping 0 -> 1 over ``warmup_steps`` (tangent warm-up), g <- g / (||g|| + c) (tangent
normalisation), and the loss
    lambda(t) / e^{w(t)} / D ||F_theta - F^- - g||^2 + w(t),
w(t) a learned log-variance (a linear head on fixed Fourier features of c_noise(t), trained with
the network), lambda(t) = 1 / (sigma_d tan t) the prior weighting (``prior_weight``).
``target_mu`` > 0 takes F^- and its JVP from an EMA theta^- instead, as discrete CT's target (a
study lever: on the toy it diverges, 254x the exact sampler's energy; with theta^- != theta the
loss keeps F_theta - F_theta^-, which the tangent does not cancel).

The backbone's output is -F, so an EDM-trained backbone is a TrigFlow network as it is
(c_skip = cos^2 t, c_out = sigma_d sin t, c_in = cos t / sigma_d): with ``c_noise=edm``
(log(sigma_d tan t) / 4) an sCD student can start from its teacher's weights; ``c_noise=t``
(default) is the paper's TrigFlow time input, whose derivative stays bounded (the paper's
stable time conditioning). The backbone's time embedding must stay low-frequency in c_noise too
(the paper's positional embedding of t, not of 1000 t): the JVP differentiates through it, and
an embedding of frequency k scales dF/dt by up to k, which feeds back into the tangent. The toy
MLP spreads c_noise over sinusoids up to 100 rad (``noise_scale``, right for EDM's log-sigma);
at that scale sCD on gmm:random:0 lands at 22x the exact sampler's energy, at ``noise_scale=1``
3.6x with nothing else changed (docs/benchmarks.md, "sCM on the random-mixture family").
Time inputs and embeddings are float32.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genmod import config_lib, method, nets, teacher as teacher_lib
from genmod.methods import cm


def defaults():
    """The ``config.scm`` block: paper values for CIFAR-10 (sigma_d 0.5, lognormal(-1.0, 1.4),
    c = 0.1, 10k warm-up steps, 2-step t_mid 1.1)."""
    return ml_collections.ConfigDict(dict(
        mode="sct", sigma_data=0.5, P_mean=-1.0, P_std=1.4,
        c_noise="t",                       # "t" (TrigFlow) or "edm" (log(sigma_d tan t) / 4)
        warmup_steps=10_000, norm_c=0.1,   # tangent warm-up and normalisation g / (||g|| + c)
        prior_weight=True,                 # lambda(t) = 1 / (sigma_d tan t)
        adaptive_weight=True,              # learned w(t); False: w = 0 (scm_toy: the weight 1 / E[d^2 | t] destabilises
                                           # a run whose error gets small; docs/benchmarks.md "sCM, round 3")
        logvar_features=128,               # Fourier features of the adaptive weight's head
        sigma_max=80.0,                    # t_max = arctan(sigma_max / sigma_d): where sampling starts
        sample_ts=(1.1,),                  # intermediate t of multistep sampling (nfe - 1 used)
        init_from_teacher=True,            # sCD: the student starts from the teacher's weights
        velocity="sample",                 # sCT's dx_t/dt: "sample" (the pair's own x0) or "batch" (Method.velocity)
        target_mu=0.0,                     # F^- and its JVP from an EMA theta^- of decay mu (0: the paper's stop_gradient(theta))
    ))


def _bcast(v, x):
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


class TrigFlow(nn.Module):
    """(F_theta(x_t / sigma_d, c_noise(t)), w(t)): the network (under ``params['net']``, like
    EDMPrecond) and the adaptive-weight head."""

    net: nn.Module
    sigma_data: float = 0.5
    c_noise: str = "t"
    logvar_features: int = 128

    @nn.compact
    def __call__(self, x, t, labels=None, *, train=False):
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        c = t if self.c_noise == "t" else 0.25 * jnp.log(self.sigma_data * jnp.tan(t))
        F = -self.net(x / self.sigma_data, c, labels, train=train).astype(x.dtype)
        freqs = np.random.RandomState(0).standard_normal(self.logvar_features // 2).astype(np.float32)
        a = 2 * np.pi * c[:, None] * freqs[None]
        phi = jnp.concatenate([jnp.cos(a), jnp.sin(a)], -1) * math.sqrt(2.0 / self.logvar_features)
        return F, nn.Dense(1, kernel_init=nn.initializers.zeros, name="logvar")(phi)[:, 0]


def consistency_fn(F, x, t, sigma_data):
    """f(x_t, t) = cos(t) x_t - sin(t) sigma_d F."""
    return _bcast(jnp.cos(t), x) * x - _bcast(jnp.sin(t), x) * sigma_data * F


def scm_tangent(F_fn, x, t, dxdt, sigma_data, r=1.0):
    """(F^-, g): F^- = F(x_t, t) and the un-normalised tangent g = cos(t) df/dt, with
    cos(t) sin(t) dF/dt from one JVP along (dx_t/dt, 1) scaled by cos(t) sin(t). Both stop-gradient."""
    cs = jnp.cos(t) * jnp.sin(t)
    F, cs_dFdt = jax.jvp(F_fn, (x, t), (_bcast(cs, x) * dxdt, cs))
    cos2 = _bcast(jnp.cos(t) ** 2, x)
    g = -cos2 * (sigma_data * F - dxdt) - r * (_bcast(cs, x) * x + sigma_data * cs_dFdt)
    return jax.lax.stop_gradient(F), jax.lax.stop_gradient(g)


def normalize_tangent(g, c=0.1):
    """g / (||g|| + c), the norm per sample over all of its dimensions."""
    n = jnp.sqrt((g ** 2).reshape(g.shape[0], -1).sum(-1))
    return g / _bcast(n + c, g)


class Method(method.Method):
    nfe_unit = "generator steps"

    def __init__(self, config, frozen=None):
        super().__init__(config, frozen)
        c = self.c = config.scm
        self.shape, self.num_classes = tuple(config.data.shape), config.data.num_classes
        self.v_mode = c.get("velocity", "sample")
        self.target_mu = c.get("target_mu", 0.0)  # absent: a workdir from before the key
        if c.mode not in ("sct", "scd") or c.c_noise not in ("t", "edm") or self.v_mode not in ("sample", "batch"):
            raise config_lib.ConfigError(f"scm: mode must be sct or scd, c_noise t or edm, velocity sample or batch; "
                                         f"got {c.mode!r}, {c.c_noise!r}, {self.v_mode!r}")
        self.model = TrigFlow(nets.build(config.net, self.shape, self.num_classes), c.sigma_data, c.c_noise,
                              c.logvar_features)
        self.tx, self.lr = method.make_optimizer(config.optim.net, config.batch_size, config.total_steps)
        self.t_max = math.atan(c.sigma_max / c.sigma_data)
        self.teacher = None
        if c.mode == "scd" and self.v_mode == "batch":
            raise config_lib.ConfigError("scm.velocity=batch is sCT's; sCD's velocity is its teacher's PF-ODE")
        if c.mode == "scd":
            self.teacher = teacher_lib.load(config.teacher, config.data, config.net)
            self.frozen = {"teacher": self.teacher.params}

    def init(self, rng, batch):
        x = batch["x"]
        p = self.model.init({"params": rng}, x, jnp.ones(x.shape[:1]), method.onehot(batch, self.num_classes))["params"]
        if self.teacher is not None and self.c.init_from_teacher and self.teacher.params:
            tp = self.teacher.params.get("net")
            if self.c.c_noise != "edm" or jax.tree.structure(tp) != jax.tree.structure(p["net"]):
                raise config_lib.ConfigError("scm.init_from_teacher needs scm.c_noise=edm and the teacher's network "
                                             "as config.net (or set scm.init_from_teacher=False)")
            p = {**p, "net": jax.tree.map(jnp.asarray, tp)}
        extra = {"target": jax.tree.map(jnp.copy, p)} if self.target_mu else {}
        return method.new_state(rng, {"net": p}, {"net": self.tx}, ema=("net",), extra=extra)

    def rules(self):
        return {"train": self.train_step}

    def F_fn(self, params, labels=None, dropout_key=None):
        """(x_t, t) -> (F, w(t)); with a dropout key, train mode with exactly that mask."""
        kw = {"rngs": {"dropout": dropout_key}, "train": True} if dropout_key is not None else {}
        return lambda x, t: self.model.apply({"params": params}, x, t, labels, **kw)

    def velocity(self, x0, z, x, t, labels, frozen):
        """dx_t/dt: the teacher's PF-ODE (sCD); for sCT the pair's own conditional velocity (the
        paper), or with ``velocity=batch`` the PF-ODE of the minibatch (x0 uniform over its rows:
        Xu et al. 2023's stable target, as cm's ct_x0=batch). The one-sample velocity is unbiased,
        but its spread (the distance between modes where thin modes separate) reaches the 1-step
        map through the tangent's bootstrapping: sCT lost rare modes the batch's posterior keeps
        (docs/benchmarks.md, "sCM on the random-mixture family")."""
        if self.teacher is None and self.v_mode == "sample":
            return _bcast(jnp.cos(t), x) * z - _bcast(jnp.sin(t), x) * x0
        xe, sigma = x / _bcast(jnp.cos(t), x), self.c.sigma_data * jnp.tan(t)
        D = (cm.batch_posterior_mean(x0, xe, sigma, labels) if self.teacher is None
             else self.teacher.denoise(frozen["teacher"], xe, sigma, labels))
        return (_bcast(jnp.cos(t), x) * x - D) / _bcast(jnp.sin(t), x)

    def train_step(self, state, batch, frozen):
        c, cfg = self.c, self.config
        k_t, k_z, k_drop = jax.random.split(state.key(), 3)
        x0, labels = batch["x"], method.onehot(batch, self.num_classes)
        t = jnp.arctan(jnp.exp(c.P_mean + c.P_std * jax.random.normal(k_t, x0.shape[:1])) / c.sigma_data)
        t = jnp.clip(t, 1e-4, math.pi / 2 - 1e-4)
        z = c.sigma_data * jax.random.normal(k_z, x0.shape)
        x = _bcast(jnp.cos(t), x0) * x0 + _bcast(jnp.sin(t), x0) * z
        dxdt = jax.lax.stop_gradient(self.velocity(x0, z, x, t, labels, frozen))
        r = jnp.minimum(1.0, state.step / max(c.warmup_steps, 1))
        mu = self.target_mu
        p_minus = state.extra["target"] if mu else state.params["net"]
        F_minus, g = scm_tangent(lambda x, t: self.F_fn(p_minus, labels, k_drop)(x, t)[0],
                                 x, t, dxdt, c.sigma_data, r)
        g = normalize_tangent(g, c.norm_c)
        lam = 1.0 / (c.sigma_data * jnp.tan(t)) if c.prior_weight else 1.0

        def loss_fn(p):
            F, logvar = self.F_fn(p, labels, k_drop)(x, t)
            logvar = logvar if c.adaptive_weight else jnp.zeros_like(logvar)
            d2 = ((F - F_minus - g) ** 2).reshape(F.shape[0], -1).mean(-1)
            return (lam * jnp.exp(-logvar) * d2 + logvar).mean(), d2.mean()

        (loss, d2), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["net"])
        beta = method.ema_decay(state.step, cfg.batch_size, cfg.ema.halflife_img, cfg.ema.rampup)
        state, m = method.apply_update(state, "net", grads, self.tx, self.lr, beta)
        if mu:
            state = state.replace(extra={"target": optax.incremental_update(state.params["net"], p_minus, 1 - mu)})
        return method.finish_step(state, {"scm/loss": loss, "scm/sq_err": d2, "scm/warmup": r, **m})

    def sample(self, params, keys, frozen, nfe=None):
        nfe, c = nfe or self.config.sample.nfe, self.c
        if nfe - 1 > len(c.sample_ts):
            raise ValueError(f"nfe={nfe} needs {nfe - 1} intermediate times in scm.sample_ts {tuple(c.sample_ts)}")
        labels = method.sample_labels(keys, self.num_classes)
        noise = lambda j: c.sigma_data * jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, j), self.shape))(keys)
        return scm_sample(lambda x, t: self.F_fn(params["net"], labels)(x, t)[0], noise,
                          (self.t_max,) + tuple(c.sample_ts[:nfe - 1]), c.sigma_data)


def scm_sample(F_fn, noise, ts, sigma_data):
    """The paper's multistep sampler: x0 = f(sigma_d z_0, t_0); then x0 = f(cos(t) x0 + sin(t) z_j, t).
    ``noise(j)`` is the j-th N(0, sigma_d^2) draw of every sample."""
    x = noise(0)
    full = lambda v: jnp.full(x.shape[:1], v, jnp.float32)
    x0 = consistency_fn(F_fn(x, full(ts[0])), x, full(ts[0]), sigma_data)
    for j, t in enumerate(ts[1:], 1):
        x = math.cos(t) * x0 + math.sin(t) * noise(j)
        x0 = consistency_fn(F_fn(x, full(t)), x, full(t), sigma_data)
    return x0
