"""DMD2 (Yin et al. 2024): distribution-matching distillation of a frozen EDM teacher into a
one- or few-step generator, with a fake-score critic, a GAN head and two time-scale updates.

Networks: 'gen' G (initialised from the teacher), 'fake' (critic: a trainable teacher copy
whose denoiser tracks the generator's distribution), 'head' (GAN classifier on the critic's
bottleneck features); the teacher sits read-only in ``frozen`` and is never part of the
checkpointed state. Noise levels index DMD2's 1000-level ascending Karras grid.

* Rule 'gen': x = G(z); t ~ U{min_step..max_step}, x_t = x + sigma_t eps;
  g = nan_to_num((p_real - p_fake) / mean|p_real|), p = x - D(x_t) (CFG on the real score
  only); L = 0.5 mean((x - sg(x - g))^2) + gan_gen_weight * mean softplus(-logit(x_u)).
* Rule 'critic': EDM-weighted denoising loss of 'fake' on sg(G(z)) + gan_critic_weight *
  (softplus(logit(noisy fake)) + softplus(-logit(noisy real))); trains 'fake' and 'head'.
* ``schedule(step)``: ``ttur`` critic updates, then one generator update (DMD2's
  dfake_gen_update_ratio 5 = 5 critic updates per generator update); each net's LR warm-up
  counts its own updates (its optimizer's count).
* ``loss="vsd"``: Diff-Instruct / VSD instead (the base DisBack uses for EDM teachers):
  g = D_fake - D_real unnormalised, sigma ~ lognormal(P_mean, P_std) for generator and critic.
* ``reg_weight`` > 0: DMD (Yin et al. 2024a)'s regression term, reg_weight * mean d(G(sigma_0 z),
  ODE(sigma_0 z)), d = pseudo-Huber, ODE = the teacher's Heun sampler over ``reg_steps`` Karras steps from
  the generator's first sigma, computed in the step on the same z (cheap for the analytic toy
  teacher), or, with ``reg_pool`` = N > 0, drawn from N pairs computed once before the first step
  (DMD's precomputed noise-image pairs: a network teacher's ODE costs 2 reg_steps - 1 evaluations
  per pair). It ties each noise to the mode the teacher sends it to, which the mode-seeking DM
  gradient and the GAN term alone do not (issue #16).
* ``dropout``: Diff-Instruct's train-mode networks (its di_training_loop.py / di_loss.py
  ``gloss``): dropout in G's forward in its update, in the fake score's DSM, and in both score
  evaluations of the generator gradient with one shared key (DI replays the RNG state, so the
  teacher and the fake score drop the same units). Off: every network runs in eval mode.
* ``real_guidance`` != 1 needs a teacher trained with label dropout (its recorded
  ``net.label_dropout`` > 0): only then is an all-zero label its unconditional score. EDM's
  teachers (and genmod's edm configs) have none, so guiding them is refused.
* K-step generator (``gen_steps``): sigmas at DMD2's indices range(999, 0, -1000/K);
  backward simulation trains step s on inputs made by running the current generator
  through steps 0..s-1 (no gradient), exactly as ``sample`` does at inference.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmod import edm, method, nets, teacher as teacher_lib
from genmod.methods import cm

sg = jax.lax.stop_gradient
NETS = ("gen", "fake", "head")


def defaults():
    return ml_collections.ConfigDict(dict(
        loss="dmd",                            # dmd (DMD2) | vsd (Diff-Instruct)
        sigma_min=0.002, sigma_max=80.0, rho=7.0, sigma_data=0.5, num_levels=1000,
        min_step=20, max_step=980,             # DM loss: t ~ U{20..980} (0.02 / 0.98 of the grid)
        P_mean=-1.2, P_std=1.2,                # vsd: lognormal sigma (Diff-Instruct's EDM setting)
        gan_max_step=1000,                     # diffusion GAN: u ~ U{0..gan_max_step-1} (8x8 digits: 250)
        ttur=5,                                # critic updates per generator update
        gen_steps=1, gen_sigmas=(),            # K-step generator; () = DMD2's grid indices
        backsim=True,                          # K > 1: backward simulation
        gan_gen_weight=3e-3, gan_critic_weight=1e-2,
        real_guidance=1.0,                     # CFG scale on the real score (1 = off; needs label dropout)
        dropout=False,                         # Diff-Instruct: G, teacher and fake in train mode
        init_from_teacher=True,                # gen and fake start as teacher copies
        reg_weight=0.0, reg_steps=18,          # DMD's regression to the teacher's ODE (0 = off)
        reg_huber_c=0.0,                       # its pseudo-Huber c; 0: iCT's 0.00054 sqrt(d)
        reg_pool=0,                            # > 0: DMD's precomputed pairs (this many), else fresh each step
    ))


def smoke(c):
    """After ``config_lib.smoke``: untrained teacher, and TTUR 1 so that the generator and the
    critic rules both run within the 4 smoke steps."""
    c.teacher.workdir = "init"
    c.dmd2.ttur = 1
    return c


def optim(lr, warmup_steps=0, clip=10.0, weight_decay=0.01, b1=0.9, b2=0.999):
    """``config.optim`` for the three networks (AdamW, clip 10: DMD2's settings)."""
    one = dict(name="adam", lr=lr, b1=b1, b2=b2, eps=1e-8, warmup_img=0, warmup_steps=warmup_steps, clip=clip,
               weight_decay=weight_decay, cooldown_frac=0.0)
    return ml_collections.ConfigDict({n: dict(one) for n in NETS})


class Head(nn.Module):
    """DMD2's cls_pred_branch: Conv4x4/2 -> GN -> SiLU -> Conv4x4/4 -> GN -> SiLU -> Conv1x1 on
    a (B, H, W, C) bottleneck (spatial mean of what is left), or the Dense analogue on (B, C).
    GroupNorm keeps >= 4 channels per group (32 groups for DMD2's 768 channels), so it never
    normalises single values to zero on narrow or 1x1 features."""

    @nn.compact
    def __call__(self, f):
        C = f.shape[-1]
        gn = lambda: nn.GroupNorm(num_groups=math.gcd(32, max(C // 4, 1)))  # noqa: E731
        if f.ndim == 4:
            f = nn.silu(gn()(nn.Conv(C, (4, 4), strides=2, padding=1)(f)))
            f = nn.silu(gn()(nn.Conv(C, (4, 4), strides=4, padding="VALID" if f.shape[1] >= 4 else "SAME")(f)))
            return nn.Conv(1, (1, 1))(f).mean((1, 2))[:, 0]
        f = nn.silu(gn()(nn.Dense(C)(f)))
        f = nn.silu(gn()(nn.Dense(C)(f)))
        return nn.Dense(1)(f)[:, 0]


def _bc(v, x):
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def teacher_label_dropout(teacher, config) -> float:
    """The label dropout the teacher was trained with: its workdir's recorded ``net``
    (``init``: this config's net; ``analytic``: none, it ignores labels)."""
    if teacher.config is not None:
        return float(teacher.config.net.get("label_dropout", 0.0))
    return float(config.net.get("label_dropout", 0.0)) if config.teacher.workdir == "init" else 0.0


class Method(method.Method):
    def __init__(self, config, frozen=None):
        super().__init__(config, frozen)
        c = self.c = config.dmd2
        self.loss = c.loss
        if self.loss not in ("dmd", "vsd"):
            raise ValueError(f"unknown dmd2.loss {c.loss!r}: use dmd or vsd")
        if c.ttur < 1:
            raise ValueError(f"dmd2.ttur (critic updates per generator update) must be >= 1, got {c.ttur}")
        self.shape, self.num_classes = tuple(config.data.shape), config.data.num_classes
        self.D = edm.EDMPrecond(nets.build(config.net, self.shape, self.num_classes), c.sigma_data)
        self.head = Head()
        steps = self.run_steps(config)
        n_gen = steps // (c.ttur + 1)  # schedule(): the generator's updates in this run
        opt = {n: method.make_optimizer(config.optim[n], config.batch_size, n_gen if n == "gen" else steps - n_gen)
               for n in NETS}
        self.txs, self.lrs = {n: o[0] for n, o in opt.items()}, {n: o[1] for n, o in opt.items()}
        self.teacher = teacher_lib.load(config.teacher, config.data, config.net)
        self.frozen = {"teacher": self.teacher.params}
        if c.real_guidance != 1.0 and not teacher_label_dropout(self.teacher, config) > 0:
            raise ValueError(f"dmd2.real_guidance={c.real_guidance} needs a teacher trained with label dropout "
                             f"(its net.label_dropout > 0), where an all-zero label is the unconditional score; "
                             f"this teacher ({config.teacher.workdir}) has none: use real_guidance=1")
        # ascending Karras grid, index 0 = sigma_min (DMD2's karras_sigmas, flipped)
        self.grid = np.asarray(edm.karras_sigmas(c.num_levels, c.sigma_min, c.sigma_max, c.rho)[:-1][::-1], np.float32)
        K = c.gen_steps
        idx = list(range(c.num_levels - 1, 0, -(c.num_levels // K)))[:K]
        self.gen_sigmas = tuple(float(s) for s in (c.gen_sigmas or self.grid[idx]))
        if len(self.gen_sigmas) != K:
            raise ValueError(f"dmd2.gen_sigmas has {len(self.gen_sigmas)} entries for gen_steps={K}")

    # -- networks -------------------------------------------------------------------------------
    def init(self, rng, batch):
        x, labels = batch["x"], self.labels_like(batch["x"].shape[0])
        kg, kf, kh = jax.random.split(rng, 3)
        s = jnp.ones(x.shape[:1])
        p = {"gen": self.D.init(kg, x, s, labels)["params"], "fake": self.D.init(kf, x, s, labels)["params"]}
        if self.c.init_from_teacher and self.teacher.params:
            if jax.tree.structure(self.teacher.params) != jax.tree.structure(p["gen"]):
                raise ValueError("dmd2.init_from_teacher: the teacher's network differs from config.net")
            p = {n: jax.tree.map(jnp.array, self.teacher.params) for n in ("gen", "fake")}
        feats = jax.eval_shape(lambda q: self.fake(q, x, s, labels, features=True)[1], p["fake"])
        p["head"] = self.head.init(kh, jnp.zeros(feats.shape, feats.dtype))["params"]
        return method.new_state(rng, p, self.txs, ema=("gen",), extra=self.init_extra())

    def init_extra(self):
        return {}

    def labels_like(self, n):
        return jnp.zeros((n, self.num_classes)) if self.num_classes else None

    def apply_D(self, p, x, sigma, labels, dropout_key=None, **kw):
        """D(x; sigma) of params ``p``; with ``dropout_key``, in train mode (dropout on)."""
        if dropout_key is None:
            return self.D.apply({"params": p}, x, sigma, labels, **kw)
        return self.D.apply({"params": p}, x, sigma, labels, train=True, rngs={"dropout": dropout_key}, **kw)

    def gen(self, p, x, sigma, labels, dropout_key=None):
        return self.apply_D(p, x, sigma, labels, dropout_key)

    def fake(self, p, x, sigma, labels, features=False, dropout_key=None):
        return self.apply_D(p, x, sigma, labels, dropout_key, return_bottleneck=features)

    def drop_key(self, state, tag):
        """The dropout key of ``dmd2.dropout`` runs (None: eval mode)."""
        return state.key(tag) if self.c.get("dropout", False) else None

    def target(self, frozen, x, sigma, labels, dropout_key=None):
        """The denoiser the generator is matched to: the teacher (DisBack: a path checkpoint)."""
        kw = {} if dropout_key is None else {"dropout_key": dropout_key}
        return self.teacher.denoise(frozen["teacher"], x, sigma, labels, **kw)

    def real(self, frozen, x, sigma, labels, dropout_key=None):
        """``target``, with classifier-free guidance D_u + w (D_c - D_u) when conditional."""
        D = self.target(frozen, x, sigma, labels, dropout_key)
        w = self.c.real_guidance
        if labels is None or w == 1.0:
            return D
        D_u = self.target(frozen, x, sigma, jnp.zeros_like(labels), dropout_key)
        return D_u + w * (D - D_u)

    def logit(self, p_fake, p_head, x, labels, key):
        """Diffusion-GAN logit: head(fake bottleneck(x + sigma_u eps, sigma_u)), u ~ U{0..max-1}."""
        k_u, k_n = jax.random.split(key)
        sigma = jnp.asarray(self.grid)[jax.random.randint(k_u, x.shape[:1], 0, self.c.gan_max_step)]
        _, feats = self.fake(p_fake, x + _bc(sigma, x) * jax.random.normal(k_n, x.shape), sigma, labels, features=True)
        return self.head.apply({"params": p_head}, feats)

    def sigma(self, key, n, lo, hi):
        """Noise levels: grid[U{lo..hi}] (dmd), or lognormal (vsd, Diff-Instruct)."""
        if self.loss == "vsd":
            return edm.sample_sigma(key, n, self.c.P_mean, self.c.P_std)
        return jnp.asarray(self.grid)[jax.random.randint(key, (n,), lo, hi + 1)]

    # -- generator ------------------------------------------------------------------------------
    def gen_inputs(self, p_gen, key, batch):
        """(x_in, sigma, labels) the generator is trained on. K > 1: each sample trains step
        s ~ U{0..K-1}; backsim makes its input by running the current generator through
        steps 0..s-1 (no gradient), else data are noised to sigma_s (DMD2 without backsim)."""
        B, K = batch["x"].shape[0], len(self.gen_sigmas)
        k_z, k_s, k_l = jax.random.split(key, 3)
        labels = (jax.nn.one_hot(jax.random.randint(k_l, (B,), 0, self.num_classes), self.num_classes)
                  if self.num_classes else None)
        sig = jnp.asarray(self.gen_sigmas, jnp.float32)
        z = jax.random.normal(k_z, (K, B) + self.shape)
        if K == 1:
            return sig[0] * z[0], jnp.full((B,), sig[0]), labels
        s = jax.random.randint(k_s, (B,), 0, K)
        if self.c.backsim:
            x_in = sel = sig[0] * z[0]
            for j in range(K - 1):  # the inference chain, without gradient
                x_in = sg(self.gen(sg(p_gen), x_in, jnp.full((B,), sig[j]), labels)) + sig[j + 1] * z[j + 1]
                sel = jnp.where(_bc(s == j + 1, sel), x_in, sel)
        else:
            labels = method.onehot(batch, self.num_classes)
            sel = jnp.where(_bc(s == 0, z[0]), sig[0] * z[0], batch["x"] + _bc(sig[s], z[1]) * z[1])
        return sel, sig[s], labels

    def generate(self, p_gen, key, batch, dropout_key=None):
        x_in, sigma, labels = self.gen_inputs(p_gen, key, batch)
        return self.gen(p_gen, x_in, sigma, labels, dropout_key), labels

    def weight(self, p_head, feats, sigma, extra):
        """Per-sample generator weighting h (f-distill); DMD2: none."""
        return None, extra, {}

    dm_features = False  # f-distill reads the critic's features at x_t

    def dm_grad(self, params, x, labels, key, frozen, extra, dropout_key=None):
        """g = nan_to_num(h (p_real - p_fake) / mean|p_real|) at x_t = x + sigma_t eps (vsd: no
        normalisation; p_real - p_fake = D_fake - D_real either way). ``dropout_key``: both
        scores in train mode with the same dropout masks (Diff-Instruct)."""
        x = sg(x)
        k_t, k_n = jax.random.split(key)
        sigma = self.sigma(k_t, x.shape[0], self.c.min_step, self.c.max_step)
        x_t = x + _bc(sigma, x) * jax.random.normal(k_n, x.shape)
        p_real = x - self.real(frozen, x_t, sigma, labels, dropout_key)
        out = self.fake(params["fake"], x_t, sigma, labels, features=self.dm_features, dropout_key=dropout_key)
        p_fake = x - (out[0] if self.dm_features else out)
        g = p_real - p_fake
        if self.loss == "dmd":
            g = g / _bc(jnp.abs(p_real).reshape(x.shape[0], -1).mean(-1), x)
        h, extra, m = self.weight(params["head"], out[1] if self.dm_features else None, sigma, extra)
        if h is not None:
            g = g * _bc(h, g)
        return jnp.nan_to_num(g), extra, m

    def reg_pair(self, key, batch, frozen):
        """(generator input sigma_0 z, sigma, labels, y = teacher ODE(sigma_0 z)): on a fresh z,
        or B pairs drawn from the precomputed pool."""
        B, s0 = batch["x"].shape[0], self.gen_sigmas[0]
        if self.c.get("reg_pool", 0):
            pool = frozen["reg_pool"]
            i = jax.random.randint(key, (B,), 0, pool["z"].shape[0])
            labels = pool["labels"][i] if self.num_classes else None
            return s0 * pool["z"][i], jnp.full((B,), s0), labels, pool["y"][i]
        z, labels, y = self.teacher_ode(key, B, frozen)
        return s0 * z, jnp.full((B,), s0), labels, sg(y)

    def teacher_ode(self, key, n, frozen):
        """(z, labels, the teacher's Heun endpoint from sigma_0 z) for ``n`` fresh noises."""
        k_z, k_l = jax.random.split(key)
        labels = (jax.nn.one_hot(jax.random.randint(k_l, (n,), 0, self.num_classes), self.num_classes)
                  if self.num_classes else None)
        z = jax.random.normal(k_z, (n,) + self.shape)
        sig = edm.karras_sigmas(self.c.reg_steps, self.c.sigma_min, self.gen_sigmas[0], self.c.rho)
        D = lambda x, t: self.teacher.denoise(frozen["teacher"], x, jnp.full((n,), t), labels)  # noqa: E731
        return z, labels, edm.heun_sampler(D, z, sig)

    def host_step(self, step, state, workdir):
        """``reg_pool``: compute the pairs once per process (at the start or resume; seeded by
        config.seed, so a resumed run draws the same pool)."""
        n = self.c.get("reg_pool", 0)
        if not n or "reg_pool" in self.frozen:
            return None
        chunk = 256
        ode = jax.jit(lambda k, f: self.teacher_ode(k, chunk, f))
        key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed), 0x7e9)
        parts = [ode(jax.random.fold_in(key, j), self.frozen) for j in range(-(-n // chunk))]
        pool = {"z": jnp.concatenate([p[0] for p in parts])[:n], "y": jnp.concatenate([p[2] for p in parts])[:n]}
        pool["labels"] = jnp.concatenate([p[1] for p in parts])[:n] if self.num_classes else jnp.zeros((n, 0))
        self.frozen = {**self.frozen, "reg_pool": pool}
        return self.frozen

    def regression(self, p_gen, key, batch, frozen):
        """DMD's regression loss, a distance (DMD: LPIPS; here iCT's pseudo-Huber on the whole
        sample), not a squared error: where neighbouring noises go to different modes, a squared
        error is minimised by their mean, between the modes; a distance by one of them."""
        x_in, sigma, labels, y = self.reg_pair(key, batch, frozen)
        c = self.c.reg_huber_c or 0.00054 * math.sqrt(int(np.prod(self.shape)))
        return cm.pseudo_huber(self.gen(p_gen, x_in, sigma, labels), y, c).mean()

    def gen_step(self, state, batch, frozen):
        c, cfg, P = self.c, self.config, state.params
        k_gen, k_dm, k_gan, k_reg = (state.key(i) for i in range(4))

        def loss_fn(p_gen):
            x, labels = self.generate(p_gen, k_gen, batch, self.drop_key(state, 10))
            g, extra, m = self.dm_grad(P, x, labels, k_dm, frozen, state.extra, self.drop_key(state, 11))
            l_dm = 0.5 * jnp.mean((x - sg(x - g)) ** 2)  # d/dx = g / numel
            m = {**m, "gen/dm_loss": l_dm}
            loss = l_dm
            if c.reg_weight:
                l_reg = self.regression(p_gen, k_reg, batch, frozen)
                loss, m = loss + c.reg_weight * l_reg, {**m, "gen/reg_loss": l_reg}
            if c.gan_gen_weight:
                l_gan = jax.nn.softplus(-self.logit(P["fake"], P["head"], x, labels, k_gan)).mean()
                loss, m = loss + c.gan_gen_weight * l_gan, {**m, "gen/gan_loss": l_gan}
            return loss, (extra, m)

        (loss, (extra, m)), grads = jax.value_and_grad(loss_fn, has_aux=True)(P["gen"])
        beta = method.ema_decay(method.update_count(state.opt["gen"]), cfg.batch_size, cfg.ema.halflife_img,
                                cfg.ema.rampup)
        state, mu = method.apply_update(state, "gen", grads, self.txs["gen"], self.lrs["gen"], beta)
        return method.finish_step(state.replace(extra=extra), {"gen/loss": loss, **m, **mu})

    # -- critic ---------------------------------------------------------------------------------
    def critic_step(self, state, batch, frozen, x=None, labels=None, gan=None):
        """``x``: the samples to fit (default: fresh sg(G(z))); ``gan``: False for DSM only."""
        c, P = self.c, state.params
        k_gen, k_t, k_n, k_f, k_r = (state.key(i) for i in range(5))
        if x is None:
            x, labels = self.generate(sg(P["gen"]), k_gen, batch)
        x = sg(x)
        real, real_labels = batch["x"], method.onehot(batch, self.num_classes)
        sigma = self.sigma(k_t, x.shape[0], 0, c.num_levels - 1)
        x_t = x + _bc(sigma, x) * jax.random.normal(k_n, x.shape)
        gan = bool(c.gan_critic_weight) if gan is None else gan

        def loss_fn(q):
            err = (self.fake(q["fake"], x_t, sigma, labels, dropout_key=self.drop_key(state, 10)) - x) ** 2
            l_fake = jnp.mean(_bc(edm.loss_weight(sigma, c.sigma_data), err) * err)
            m = {"critic/fake_loss": l_fake}
            if not gan:
                return l_fake, m
            lf = self.logit(q["fake"], q["head"], x, labels, k_f)
            lr = self.logit(q["fake"], q["head"], real, real_labels, k_r)
            l_d = jnp.mean(jax.nn.softplus(lf) + jax.nn.softplus(-lr))
            m.update({"critic/gan_loss": l_d, "critic/logit_real": lr.mean(), "critic/logit_fake": lf.mean()})
            return l_fake + c.gan_critic_weight * l_d, m

        q = {"fake": P["fake"], "head": P["head"]}
        (loss, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(q)
        state, mf = method.apply_update(state, "fake", grads["fake"], self.txs["fake"], self.lrs["fake"])
        mh = {}
        if gan:
            state, mh = method.apply_update(state, "head", grads["head"], self.txs["head"], self.lrs["head"])
        return method.finish_step(state, {"critic/loss": loss, **m, **mf, **mh})

    def run_steps(self, config):
        """Steps this method's schedule runs for (a stage that wraps it says its own)."""
        return config.total_steps

    # -- contract -------------------------------------------------------------------------------
    def rules(self):
        return {"gen": self.gen_step, "critic": self.critic_step}

    def schedule(self, step):
        k = self.c.ttur
        return "gen" if step % (k + 1) == k else "critic"

    nfe_unit = "generator steps"

    def sample(self, params, keys, frozen, nfe=None):
        """The first ``nfe`` (default all K) generator steps; x = G(x + sigma_j z_j, sigma_j),
        sample i's noises and label from keys[i]."""
        nfe = nfe or self.config.sample.nfe
        if nfe > len(self.gen_sigmas):
            raise ValueError(f"nfe={nfe}: this generator has {len(self.gen_sigmas)} steps (dmd2.gen_steps)")
        labels = method.sample_labels(keys, self.num_classes)
        n = keys.shape[0]
        z = lambda j: jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1000 + j), self.shape))(keys)  # noqa: E731
        x = jnp.zeros((n,) + self.shape)
        for j, s in enumerate(self.gen_sigmas[:nfe]):
            x = self.gen(params["gen"], x + s * z(j), jnp.full((n,), s), labels)
        return x
