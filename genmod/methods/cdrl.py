"""Cooperative diffusion recovery likelihood (CDRL; Zhu, Xie, Wu, Gao, ICLR 2024) and plain
DRL (Gao et al. 2021) with ``cdrl.initializer=False``.

One energy network f(y, t) ('ebm') models T levels of increasingly noisy data by recovery
likelihood: p(y | x_t) ~ exp(f(y) / d2 - |x_t - y|^2 / (2 sig2)), y = a_t x_{t-1} the scaled
cleaner sample (the energy is parameterised as f / d2, d2 the Langevin step^2, so one step moves
by grad f / 2). Per level an initializer ('init', a residual net x_t + net(x_t) with fixed
posterior noise) proposes where a short Langevin chain starts; the EBM is trained on data vs.
chain ends (contrastive), the initializer regresses onto the chain ends ("MCMC teaching").
Symbols follow the official ``main_uncond.py`` (``pi`` = our 'ebm', ``p`` = our 'init'):
t in 1..T, s = t - 1, abar = sigmoid(logsnr), r = a_t^2 = abar_t / abar_s (1 at the top level,
a marginal EBM on x_{T-1} started from noise), sig2 = 1 - abar_t / abar_s, d2 = b2 c_t sig2.
Both networks see the noise label c_noise = 1000 arctan(exp(-logsnr / 2)) / (pi / 2).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from genmod import langevin, method, nets


def defaults():
    """The ``config.cdrl`` block (CIFAR-10 values of the official code)."""
    return ml_collections.ConfigDict(dict(
        levels=6, logsnr_min=-5.1, logsnr_max=9.8,   # cosine log-SNR schedule, T levels
        langevin_steps=15,          # K per level in training (sampling: config.sample.nfe)
        b2=4e-4, step_c="level",    # d2 = b2 c_t sig2; c_t = sqrt(1-abar_s)/sqrt(1-abar_0) or "const" 1/sqrt(1-abar_0)
        initializer=True,           # False: plain DRL, chains start at x_t
        init_noise=True,            # proposal = mean + sqrt(r * posterior var) noise
        variance_reduction=True,    # one eps for x_{t-1} and x_t
        tweedie=2.0,                # final denoising step with score tweedie * grad f / d2_1 (0: off)
        p_uncond=0.1, guidance=0.0))  # label dropout in training; CFG weight w in sampling


class Level(NamedTuple):
    ls_t: jax.Array    # logsnr of the noisy x_t
    ls_s: jax.Array    # logsnr of the cleaner x_s the EBM models
    ab_t: jax.Array
    ab_s: jax.Array
    final: jax.Array   # top level: no quadratic coupling, r = 1
    r: jax.Array
    sig2: jax.Array
    btil: jax.Array    # DDPM posterior variance (initializer noise, before scaling by r)
    d2: jax.Array      # Langevin step^2
    w: jax.Array       # EBM loss weight sigma_1 / sigma_t


def logsnr(u, lo, hi):
    """Cosine log-SNR: logsnr(0) = hi, logsnr(1) = lo."""
    b = jnp.arctan(jnp.exp(-0.5 * hi))
    a = jnp.arctan(jnp.exp(-0.5 * lo)) - b
    return -2.0 * jnp.log(jnp.tan(a * u + b))


def noise_label(ls):
    return 1000.0 * jnp.arctan(jnp.exp(-0.5 * ls)) / (0.5 * jnp.pi)


def level(t, k) -> Level:
    """Constants of level ``t`` (int array, 1..T) from the ``config.cdrl`` block ``k``."""
    T = k.levels
    sched = lambda i: logsnr(i / T, k.logsnr_min, k.logsnr_max)  # noqa: E731
    ls_t, ls_s = sched(t), sched(t - 1)
    ab_t, ab_s, ab_0 = jax.nn.sigmoid(ls_t), jax.nn.sigmoid(ls_s), jax.nn.sigmoid(k.logsnr_max)
    final = t == T
    sig2 = 1.0 - ab_t / ab_s
    c = (jnp.sqrt(1 - ab_s) if k.step_c == "level" else jnp.ones_like(ab_s)) / jnp.sqrt(1 - ab_0)
    sig2_1 = 1.0 - jax.nn.sigmoid(sched(1)) / ab_0
    return Level(ls_t, ls_s, ab_t, ab_s, final, jnp.where(final, 1.0, ab_t / ab_s), sig2,
                 (1 - ab_s) / (1 - ab_t) * sig2, k.b2 * c * sig2, jnp.sqrt(sig2_1 / sig2))


def bc(v, x):
    """Per-sample values (B,) broadcast against x (B, ...)."""
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def recovery_chain(energy, y0, x_t, L: Level, noise, n_steps):
    """K Langevin steps on the recovery log-likelihood f(y) / d2 - |y - x_t|^2 / (2 sig2) (no
    coupling at the top level), so each step moves by grad f / 2 - d2 / (2 sig2) (y - x_t) plus
    sqrt(d2) noise. Returns the chain end, detached (the chain is not differentiated)."""
    d2, sig2, coup = bc(L.d2, y0), bc(L.sig2, y0), bc(1.0 - L.final, y0)
    grad_f = jax.grad(lambda y: energy(y).sum())
    score = lambda y: grad_f(y) / d2 - coup * (y - x_t) / sig2  # noqa: E731
    return jax.lax.stop_gradient(langevin.ula(score, jax.lax.stop_gradient(y0), noise, d2, n_steps))


def check(config):
    """One clear ValueError for a bad ``config.cdrl`` (or missing networks/optimizers)."""
    k = config.cdrl
    if not (isinstance(k.levels, int) and k.levels >= 1):
        raise ValueError(f"cdrl.levels must be an int >= 1, got {k.levels!r}")
    if k.step_c not in ("level", "const"):
        raise ValueError(f"cdrl.step_c must be 'level' or 'const', got {k.step_c!r}")
    if k.langevin_steps < 0 or config.sample.nfe < 0:
        raise ValueError("cdrl.langevin_steps and sample.nfe (Langevin steps per level) must be >= 0")
    if not k.logsnr_min < k.logsnr_max or k.b2 <= 0:
        raise ValueError("cdrl needs logsnr_min < logsnr_max and b2 > 0")
    if k.guidance and not config.data.num_classes:
        raise ValueError("cdrl.guidance needs a class-conditional model (data.num_classes > 0)")
    need = ("ebm", "init") if k.initializer else ("ebm",)
    for n in need:
        if f"{n}_net" not in config or n not in config.optim:
            raise ValueError(f"cdrl needs config.{n}_net and config.optim.{n}"
                             + ("" if n == "ebm" else " (or cdrl.initializer=False for plain DRL)"))


class Method(method.Method):
    def __init__(self, config, frozen=None):
        super().__init__(config, frozen)
        check(config)
        c, self.k = config, config.cdrl
        self.shape, self.num_classes = tuple(c.data.shape), c.data.num_classes
        self.nets = {"ebm": nets.build(c.ebm_net, self.shape, self.num_classes)}
        if self.k.initializer:
            self.nets["init"] = nets.build(c.init_net, self.shape, self.num_classes)
        self.tx = {n: method.make_optimizer(c.optim[n], c.batch_size) for n in self.nets}

    def init(self, rng, batch):
        x, lab = batch["x"], method.onehot(batch, self.num_classes)
        v = {n: net.init({"params": jax.random.fold_in(rng, i)}, x, jnp.ones(x.shape[:1]), lab)
             for i, (n, net) in enumerate(self.nets.items())}
        stats = v["ebm"].get("batch_stats")  # spectral-norm power-iteration vectors
        return method.new_state(rng, {n: vi["params"] for n, vi in v.items()}, {n: t[0] for n, t in self.tx.items()},
                                ema=tuple(self.nets), extra={"ebm_stats": stats} if stats else {})

    def rules(self):
        return {"train": self.train_step}

    def sample_params(self, state):
        return {**state.ema, **state.extra}

    # -- the two networks ------------------------------------------------------------------
    def f(self, p, stats, y, ls, lab, w=0.0, train=False):
        """Energy f(y, level) (guided: (1 + w) f(y, lab) - w f(y, null)). With ``train`` returns
        (f, updated spectral-norm stats) as the official positive pass does."""
        v = {"params": p, **({"batch_stats": stats} if stats else {})}
        cn = jnp.broadcast_to(noise_label(ls), y.shape[:1])
        if train:
            out, upd = self.nets["ebm"].apply(v, y, cn, lab, train=True, mutable=["batch_stats"])
            return out, upd.get("batch_stats", stats)
        out = self.nets["ebm"].apply(v, y, cn, lab)
        if lab is not None and w:
            out = (1 + w) * out - w * self.nets["ebm"].apply(v, y, cn, jnp.zeros_like(lab))
        return out

    def propose(self, p, x_t, L, lab, z, w=0.0, drop_key=None):
        """Initializer q(y | x_t): x_t + net(x_t) (guided on the residual) + sqrt(r btil) z."""
        cn = noise_label(L.ls_t)
        net = lambda l: self.nets["init"].apply({"params": p}, x_t, cn, l, train=drop_key is not None,  # noqa: E731
                                                rngs={"dropout": drop_key} if drop_key is not None else {})
        d = net(lab)
        if lab is not None and w:
            d = (1 + w) * d - w * net(jnp.zeros_like(lab))
        return x_t + d + (bc(jnp.sqrt(L.r * L.btil), x_t) * z if self.k.init_noise else 0.0)

    def pairs(self, x, L, key):
        """(x_s, x_t): with variance reduction one eps gives both (the same eps is recovered from
        either, so x_t is a function of (x, x_s)); otherwise x_t = a x_s + sigma eps', eps' fresh."""
        ke, ke2 = jax.random.split(key)
        ab_s, ab_t = bc(L.ab_s, x), bc(L.ab_t, x)
        eps = jax.random.normal(ke, x.shape)
        x_s = jnp.sqrt(ab_s) * x + jnp.sqrt(1 - ab_s) * eps
        if self.k.variance_reduction:
            return x_s, jnp.sqrt(ab_t) * x + jnp.sqrt(1 - ab_t) * eps
        sig2 = bc(L.sig2, x)
        return x_s, jnp.sqrt(1 - sig2) * x_s + jnp.sqrt(sig2) * jax.random.normal(ke2, x.shape)

    # -- training --------------------------------------------------------------------------
    def train_step(self, state, batch, frozen):
        c, k = self.config, self.k
        x = batch["x"]
        kt, ke, kz, kl, kd, kc = jax.random.split(state.key(), 6)
        L = level(jax.random.randint(kt, x.shape[:1], 1, k.levels + 1), k)
        x_s, x_t = self.pairs(x, L, ke)
        lab = method.onehot(batch, self.num_classes)
        if lab is not None:  # null class (all-zero one-hot) with prob p_uncond, for both nets
            lab = lab * jax.random.bernoulli(kc, 1 - k.p_uncond, lab.shape[:1] + (1,))
        stats = state.extra.get("ebm_stats")
        P = state.params

        if k.initializer:
            z = jax.random.normal(kz, x.shape)
            y0, init_vjp = jax.vjp(lambda p: self.propose(p, x_t, L, lab, z, drop_key=kd), P["init"])
        else:
            y0 = x_t
        noise = lambda i: jax.random.normal(jax.random.fold_in(kl, i), x.shape)  # noqa: E731
        # Flax's SpectralNorm runs one power iteration from the stored u on every call, so the
        # chain, the positive (train: stores the new u) and the negative pass, all from the old
        # u, use the same sigma, as the official code's pi.train() positive pass then eval().
        y = recovery_chain(lambda y: self.f(P["ebm"], stats, y, L.ls_s, lab), y0, x_t, L, noise, k.langevin_steps)

        def ebm_loss(p):  # contrastive recovery-likelihood gradient, level-weighted
            pos, new_stats = self.f(p, stats, bc(jnp.sqrt(L.r), x) * x_s, L.ls_s, lab, train=True)
            neg = self.f(p, stats, y, L.ls_s, lab)
            return jnp.mean(L.w * (neg - pos)), (new_stats, pos.mean(), neg.mean())

        (loss, (new_stats, pos, neg)), g = jax.value_and_grad(ebm_loss, has_aux=True)(P["ebm"])
        beta = method.ema_decay(state.step, c.batch_size, c.ema.halflife_img, c.ema.rampup)
        state, m = method.apply_update(state, "ebm", g, *self.tx["ebm"], beta)
        m.update({"ebm/loss": loss, "ebm/pos": pos, "ebm/neg": neg})
        if k.initializer:  # MLE of the Gaussian initializer on the refined samples: |y_K - y0|^2
            gap = jnp.sum((y - y0).reshape(x.shape[0], -1) ** 2, -1).mean()
            (g,) = init_vjp(-2.0 * (y - y0) / x.shape[0])
            state, mi = method.apply_update(state, "init", g, *self.tx["init"], beta)
            m.update({"init/loss": gap, **mi})
        if stats:
            state = state.replace(extra={"ebm_stats": new_stats})
        return method.finish_step(state, m)

    # -- sampling --------------------------------------------------------------------------
    def nfe_used(self, nfe=None):
        """0 is a request here (no Langevin steps: the initializer alone), not the default."""
        return (self.config.sample.nfe if nfe is None else nfe), "Langevin steps per noise level"

    def sample_labels(self, keys):
        return method.sample_labels(keys, self.num_classes)

    def sample(self, params, keys, frozen, nfe=None, n_levels=None):
        """From x_T ~ N(0, I) down the levels: propose (initializer, or x_t itself for DRL), then
        ``nfe`` (default ``config.sample.nfe``) Langevin steps per level, divide by sqrt(r);
        finally one Tweedie step to x_0. Guidance ``cdrl.guidance`` on proposal and energy.
        ``n_levels`` < T stops early and returns x_{T - n_levels} (for inspection)."""
        k, T = self.k, self.k.levels
        K = self.config.sample.nfe if nfe is None else nfe
        B, w, lab = keys.shape[0], k.guidance, self.sample_labels(keys)
        stats = params.get("ebm_stats")

        def draw(*tags):  # one normal per sample from its own key: sample i depends only on seed i
            def one(kk):
                for tg in tags:
                    kk = jax.random.fold_in(kk, tg)
                return jax.random.normal(kk, self.shape)
            return jax.vmap(one)(keys)

        def step(j, x):
            L = level(jnp.full((B,), T - j), k)
            y0 = self.propose(params["init"], x, L, lab, draw(2, j, 0), w) if k.initializer else x
            energy = lambda y: self.f(params["ebm"], stats, y, L.ls_s, lab, w)  # noqa: E731
            y = recovery_chain(energy, y0, x, L, lambda i: draw(2, j, i + 1), K)
            return y / jnp.sqrt(bc(L.r, y))

        x = jax.lax.fori_loop(0, n_levels or T, step, draw(0))
        if k.tweedie and not n_levels:  # x_0 = (x + (1 - abar_0) score) / sqrt(abar_0) at level 1
            L = level(jnp.ones((B,), jnp.int32), k)
            sr, d2 = jnp.sqrt(bc(L.r, x)), bc(L.d2, x)
            score = jax.grad(lambda x: self.f(params["ebm"], stats, sr * x, L.ls_s, lab, w).sum())(x) * k.tweedie / d2
            x = (x + (1 - bc(L.ab_s, x)) * score) / jnp.sqrt(bc(L.ab_s, x))
        return x
