"""Consistency models: iCT (Song & Dhariwal 2023, the default), original CT and CD (Song et
al. 2023), with 1-step and multistep sampling.

f(x, sigma) = c_skip x + c_out F(c_in x, c_noise) with the sigma_min-shifted c_skip / c_out,
so f(x, sigma_min) = x exactly. ``config.cm.mode`` picks the training rule:

* ``ict``: target = stop_gradient(f_theta) at the lower noise level (no EMA teacher), same z
  and dropout key in both calls, pseudo-Huber on the per-sample L2 norm, weight
  1 / (sigma_{i+1} - sigma_i), discretised-lognormal index pmf, doubling N(k) curriculum.
* ``ct``: adaptive N(k) and target EMA mu(k); target = f_{theta^-}(x + t_{i+1} z). With
  ``ct_x0="batch"`` the target point comes from the minibatch's posterior instead of the pair's
  own x0: CT is then CD with the minibatch as its teacher (CD's grid, span, sub-steps and mu;
  issue #16, cm_toy).
* ``cd``: one Heun step of a frozen EDM teacher from t_i to t_{i+1}; target EMA mu (0 for
  CIFAR-10, i.e. stop_gradient(theta)). ``cd_span`` / ``cd_substeps`` > 1: the teacher carries
  the pair several levels down, in finer steps (CTM's soft matching; issue #16, cd_toy).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genmod import edm, lpips as lpips_lib, method, nets, teacher as teacher_lib


def defaults():
    return ml_collections.ConfigDict(dict(
        mode="ict", sigma_min=0.002, sigma_max=80.0, rho=7.0, sigma_data=0.5,
        s0=10, s1=1280, P_mean=-1.1, P_std=2.0,   # iCT curriculum and index pmf
        huber_c=0.0,                              # 0: c = 0.00054 sqrt(d)
        metric="l2", lpips_weights="", lpips_resize=224,  # ct / cd: l2 (pixel mean), l1, huber or lpips (Method.metric)
        ct_s0=2, ct_s1=150, mu0=0.9,              # original CT: adaptive N(k), mu(k)
        mu_rule="code",                           # CT mu(k): "code" (official, / (N-1)) or "paper" (/ N); see ct_mu
        cd_N=18, target_mu=0.0,                   # CD: grid size, target EMA (0 = stopgrad)
        cd_span=1, cd_substeps=1,                 # CD: levels the teacher spans per pair, Heun steps per level
                                                  # (1, 1 = Song et al.; costs 2 span substeps teacher calls a pair)
        index="uniform", weight="none",           # ct / cd: "lognormal" / "inv_dsigma" = iCT's pmf / weight
        init_from_teacher=True,                   # CD: student starts from the teacher's weights
        # ct_x0 (ict / ct; set by a config, absent = "sample"): the x0 behind CT's target, "sample" (the
        # pair's own, Song et al.) or "batch" (the minibatch posterior mean; see Method.ct_lower)
        sample_sigmas=(80.0, 0.821),              # multistep sigmas; nfe picks the first nfe
    ))


# -- schedules (pure in the step; resume is exact) -------------------------------------------
def ict_N(k, K, s0=10, s1=1280):
    """N(k) = min(s0 2^floor(k/K'), s1) + 1, K' = floor(K / (log2 floor(s1/s0) + 1))."""
    Kp = max(K // (int(math.log2(s1 // s0)) + 1), 1)
    return jnp.minimum(s0 * 2 ** (jnp.asarray(k) // Kp), s1) + 1


def ct_N(k, K, s0=2, s1=150):
    """N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1."""
    return (jnp.ceil(jnp.sqrt(jnp.asarray(k) / K * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1).astype(jnp.int32)


def ct_mu(N, s0=2, mu0=0.9, rule="code"):
    """Target EMA of original CT. ``paper``: mu(k) = exp(s0 ln(mu0) / N(k)) (Song et al. 2023, so
    mu(0) = mu0 = 0.9); ``code``: exp(s0 ln(mu0) / (N(k) - 1)), what the official
    get_ema_scales_fn (jcm/losses.py) computes before adding 1 to N (mu(0) = 0.81). Default
    ``code``: it is the rule behind the published CT runs and numbers."""
    if rule not in ("code", "paper"):
        raise ValueError(f"unknown cm.mu_rule {rule!r}: use code or paper")
    return jnp.exp(s0 * math.log(mu0) / (N - 1 if rule == "code" else N))


def karras(i, N, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """Ascending Karras grid sigma_i, i = 0..N-1 (N may be traced)."""
    a, b = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (a + i / (N - 1) * (b - a)) ** rho


def ict_index_logits(N, n_max, c):
    """log p(i), i = 0..n_max-2, over the ascending grid: p(i) ~ erf((ln s_{i+1} - Pm)/(sqrt2 Ps))
    - erf((ln s_i - Pm)/(sqrt2 Ps)); -inf for i >= N-1."""
    i = jnp.arange(n_max - 1)
    s_lo = karras(i, N, c.sigma_min, c.sigma_max, c.rho)
    s_hi = karras(i + 1, N, c.sigma_min, c.sigma_max, c.rho)
    cdf = lambda s: jax.scipy.special.erf((jnp.log(s) - c.P_mean) / (math.sqrt(2) * c.P_std))
    p = cdf(s_hi) - cdf(s_lo)
    return jnp.where(i < N - 1, jnp.log(jnp.maximum(p, 1e-30)), -jnp.inf)


def pseudo_huber(a, b, c):
    """sqrt(||a - b||^2 + c^2) - c on each sample's whole vector (not element-wise)."""
    d2 = ((a - b) ** 2).reshape(a.shape[0], -1).sum(-1)
    return jnp.sqrt(d2 + c**2) - c


def _bcast(v, x):
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


class Method(method.Method):
    nfe_unit = "generator steps"

    def __init__(self, config, frozen=None):
        super().__init__(config, frozen)
        c = config.cm
        self.c, self.shape, self.num_classes = c, tuple(config.data.shape), config.data.num_classes
        self.f = edm.EDMPrecond(nets.build(config.net, self.shape, self.num_classes), c.sigma_data, c.sigma_min)
        self.tx, self.lr = method.make_optimizer(config.optim.net, config.batch_size, config.total_steps)
        self.teacher = None
        if c.mode == "cd":
            self.teacher = teacher_lib.load(config.teacher, config.data, config.net)
            self.frozen = {"teacher": self.teacher.params}
        elif c.mode not in ("ict", "ct"):
            raise ValueError(f"unknown cm.mode {c.mode!r}: use ict, ct or cd")
        for key, ok in (("metric", ("l2", "l1", "huber", "lpips")), ("mu_rule", ("code", "paper")),
                        ("index", ("uniform", "lognormal")), ("weight", ("none", "inv_dsigma")),
                        ("ct_x0", ("sample", "batch"))):
            if c.get(key, ok[0]) not in ok:
                raise ValueError(f"unknown cm.{key} {c[key]!r}: use {' or '.join(ok)}")
        if c.get("metric") == "lpips" and c.mode != "ict":  # a jit argument like the teacher; "" = fetched
            self.frozen = {**self.frozen, "lpips": lpips_lib.load_params(c.get("lpips_weights") or None)}
        # CT with the batch posterior is CD with the minibatch as its teacher: CD's grid, span, sub-steps, mu
        self.empirical = c.mode == "ct" and c.get("ct_x0", "sample") == "batch"
        self.on_grid = c.mode == "cd" or self.empirical  # a teacher (the net's or the batch's) on CD's grid
        span = c.get("cd_span", 1)
        if self.on_grid and not (isinstance(span, int) and 1 <= span <= c.cd_N - 1):
            raise ValueError(f"cm.cd_span must be an integer in [1, cd_N - 1 = {c.cd_N - 1}], got {span!r}")
        sub = c.get("cd_substeps", 1)
        if self.on_grid and not (isinstance(sub, int) and sub >= 1):
            raise ValueError(f"cm.cd_substeps must be an integer >= 1, got {sub!r}")
        self.n_max = c.cd_N if self.on_grid else c.ct_s1 + 1  # largest N the grid can reach
        self.d = int(np.prod(self.shape))
        self.huber_c = c.huber_c or 0.00054 * math.sqrt(self.d)

    def init(self, rng, batch):
        x = batch["x"]
        p = self.f.init({"params": rng}, x, jnp.ones(x.shape[:1]), method.onehot(batch, self.num_classes))["params"]
        if self.teacher is not None and self.c.init_from_teacher and self.teacher.params:
            if jax.tree.structure(self.teacher.params) != jax.tree.structure(p):
                raise ValueError("cm.init_from_teacher: the teacher's network differs from config.net")
            p = jax.tree.map(jnp.asarray, self.teacher.params)
        extra = {"target": jax.tree.map(jnp.copy, p)} if self.c.mode in ("ct", "cd") else {}
        return method.new_state(rng, {"net": p}, {"net": self.tx}, ema=("net",), extra=extra)

    def rules(self):
        return {"train": self.train_step}

    def fn(self, params, labels=None, dropout_key=None):
        """f_theta(x, sigma); with a dropout key, train mode with exactly that mask."""
        rngs = {"dropout": dropout_key} if dropout_key is not None else {}
        return lambda x, s: self.f.apply({"params": params}, x, s, labels, train=dropout_key is not None, rngs=rngs)

    # -- losses -------------------------------------------------------------------------------
    def ict_pair(self, params, x, key, step, labels=None):
        """(student f(x + s_{i+1} z, s_{i+1}), stop_gradient target f(x + s_i z, s_i), weight)."""
        c, n_max = self.c, self.c.s1 + 1
        k_i, k_z, k_drop = jax.random.split(key, 3)
        N = ict_N(step, self.config.total_steps, c.s0, c.s1)
        i = jax.random.categorical(k_i, ict_index_logits(N, n_max, c), shape=x.shape[:1])
        s_lo, s_hi = karras(i, N, c.sigma_min, c.sigma_max, c.rho), karras(i + 1, N, c.sigma_min, c.sigma_max, c.rho)
        z = jax.random.normal(k_z, x.shape)
        f = self.fn(params, labels, k_drop)
        x_hi = x + _bcast(s_hi, x) * z
        student = f(x_hi, s_hi)
        target = jax.lax.stop_gradient(f(self.ct_lower(x, x_hi, s_hi, s_lo, z, labels), s_lo))
        return student, target, 1.0 / (s_hi - s_lo)

    def ct_lower(self, x, x_t, t, r, z, labels=None):
        """x_r on the ODE's Euler step from x_t: x_r = x_t - (t - r)(x_t - x0_hat)/t. ``ct_x0``
        "sample": x0_hat = the pair's own x, so x_r = x + r z (CT's one-sample velocity); "batch":
        x0_hat = the minibatch's posterior mean E[x0 | x_t] (Xu et al. 2023's stable target
        field). The one-sample velocity is unbiased, but f is not linear: E[f(x_r)] over its spread
        (t - r) std(x0 | x_t) is a blurred f wherever thin modes separate, and the blur compounds
        over CT's bootstrapped hops (issue #16, round 6); the batch estimate has far less spread."""
        if self.c.get("ct_x0", "sample") == "sample":
            return x + _bcast(r, x) * z
        x0 = batch_posterior_mean(x, x_t, t, labels)
        return x_t - _bcast((t - r) / t, x) * (x_t - x0)

    def ct_cd_pair(self, params, target_params, x, key, N, frozen, labels=None):
        """(student f(x_t, t_cur), stop_gradient target at t_next < t_cur, weight); the student's
        level i+1 of the ascending Karras grid, its index uniform (Song et al. 2023) or iCT's
        lognormal. t_next is the level below (CT, and CD with ``cd_span`` 1) or, for CD with
        ``cd_span`` K > 1, a level 1..K below (uniform, clipped at the grid's bottom) that the
        teacher reaches in as many Heun steps: CTM's soft matching (Kim et al. 2024), fewer
        bootstrapped hops between the noise and the data, so less compounded error."""
        c = self.c
        k_i, k_z, k_drop = jax.random.split(key, 3)
        if c.get("index", "uniform") == "lognormal":  # iCT's pmf over the ascending grid (N <= n_max bounds the shape)
            i = jax.random.categorical(k_i, ict_index_logits(N, self.n_max, c), shape=x.shape[:1])
        else:
            i = jax.random.randint(k_i, x.shape[:1], 0, N - 1)
        span = int(c.get("cd_span", 1)) if self.on_grid else 1
        j = i if span == 1 else jnp.maximum(i + 1 - jax.random.randint(jax.random.fold_in(k_i, 1), i.shape, 1, span + 1), 0)
        t_next, t_cur = self.level(j, N), self.level(i + 1, N)
        z = jax.random.normal(k_z, x.shape)
        x_t = x + _bcast(t_cur, x) * z
        if c.mode == "cd":
            D = lambda y, s: self.teacher.denoise(frozen["teacher"], y, s, labels)
            x_next = self.teacher_heun(D, x_t, i + 1, j, N, span)
        elif self.empirical:
            x_next = self.teacher_heun(lambda y, s: batch_posterior_mean(x, y, s, labels), x_t, i + 1, j, N, span)
        else:
            x_next = self.ct_lower(x, x_t, t_cur, t_next, z, labels)
        student = self.fn(params, labels, k_drop)(x_t, t_cur)
        target = jax.lax.stop_gradient(self.fn(target_params, labels, k_drop)(x_next, t_next))
        return student, target, (1.0 / (t_cur - t_next) if c.get("weight", "none") == "inv_dsigma" else jnp.ones_like(t_cur))

    def level(self, k, N):
        """sigma of (possibly fractional) level k of the ascending N-level Karras grid."""
        return karras(k, N, self.c.sigma_min, self.c.sigma_max, self.c.rho)

    def teacher_heun(self, D, y, hi, lo, N, max_steps):
        """Heun steps of the probability-flow ODE of denoiser D(y, sigma) (the teacher's, or the
        minibatch posterior's) down the Karras grid from level hi to
        level lo (per sample; hi - lo <= max_steps, a sample already at lo keeps its y), each grid
        step split into ``cd_substeps`` equal steps in sigma^(1/rho) (1: Song et al.)."""
        c = self.c
        S, grid = int(c.get("cd_substeps", 1)), lambda k: self.level(k, N)

        def step(k, y):  # sub-step k % S of grid step k // S below level hi (fractional levels)
            top = hi - k // S
            a, b = grid(top - (k % S) / S), grid(jnp.maximum(top - (k % S + 1) / S, 0))
            tc, tn = _bcast(a, y), _bcast(b, y)
            d = (y - D(y, a)) / tc
            y_e = y + (tn - tc) * d
            y_n = y + (tn - tc) * 0.5 * (d + (y_e - D(y_e, b)) / tn)
            return jnp.where(_bcast(top > lo, y), y_n, y)
        return jax.lax.fori_loop(0, max_steps * S, step, y)

    def metric(self, a, b, frozen=None):
        if self.c.metric == "lpips":  # the CM code's: VGG LPIPS of both resized to 224 bilinearly (jcm/losses.py),
            # at JAX's default matmul precision as there (fp32 on CPU, TF32 on recent GPUs); 0 = native size
            return lpips_lib.lpips(frozen["lpips"], a, b, self.c.get("lpips_resize", lpips_lib.RESIZE), precision=None)
        if self.c.metric == "huber":  # iCT's pseudo-Huber, carried to CT / CD as ECT does
            return pseudo_huber(a, b, self.huber_c)
        d = (a - b).reshape(a.shape[0], -1)
        return jnp.abs(d).mean(-1) if self.c.metric == "l1" else (d**2).mean(-1)

    def train_step(self, state, batch, frozen):
        c, cfg = self.c, self.config
        x, labels, key = batch["x"], method.onehot(batch, self.num_classes), state.key()
        metrics = {}
        if c.mode == "ict":
            def loss_fn(p):
                s, t, w = self.ict_pair(p, x, key, state.step, labels)
                return (w * pseudo_huber(s, t, self.huber_c)).mean()
            metrics["cm/N"] = ict_N(state.step, cfg.total_steps, c.s0, c.s1)
        else:
            if c.mode == "ct" and not self.empirical:
                N = ct_N(state.step, cfg.total_steps, c.ct_s0, c.ct_s1)
                mu = ct_mu(N, c.ct_s0, c.mu0, c.get("mu_rule", "paper"))  # absent: a workdir from before the key
            else:
                N, mu = jnp.int32(c.cd_N), jnp.float32(c.target_mu)
            # mu = 0: the target is stop_gradient(theta) itself
            target_params = jax.tree.map(lambda a, b: jnp.where(mu > 0, a, b), state.extra["target"], state.params["net"])

            def loss_fn(p):
                s, t, w = self.ct_cd_pair(p, target_params, x, key, N, frozen, labels)
                return (w * self.metric(s, t, frozen)).mean()
            metrics.update({"cm/N": N, "cm/mu": mu})
        loss, g = jax.value_and_grad(loss_fn)(state.params["net"])
        beta = method.ema_decay(state.step, cfg.batch_size, cfg.ema.halflife_img, cfg.ema.rampup)
        state, m = method.apply_update(state, "net", g, self.tx, self.lr, beta)
        if c.mode != "ict":  # theta^- <- mu theta^- + (1 - mu) theta
            state = state.replace(extra={"target": optax.incremental_update(state.params["net"], state.extra["target"], 1 - mu)})
        return method.finish_step(state, {"cm/loss": loss, **metrics, **m})

    # -- sampling -----------------------------------------------------------------------------
    def sample_labels(self, keys):
        return method.sample_labels(keys, self.num_classes)

    def sample(self, params, keys, frozen, nfe=None):
        return multistep_sample(self.fn(params["net"], self.sample_labels(keys)), keys, self.shape,
                                self.sigmas(nfe), self.c.sigma_min)

    def sigmas(self, nfe=None):
        nfe = nfe or self.config.sample.nfe
        s = tuple(self.c.sample_sigmas)
        if nfe > len(s):
            raise ValueError(f"nfe={nfe} needs {nfe} sigmas in cm.sample_sigmas, which has {len(s)}: {s}")
        return s[:nfe]


def batch_posterior_mean(x, y, s, labels=None):
    """E[x0 | y] at noise s (per row of y) when x0 is uniform over the rows of x (and of the same
    one-hot label): softmax_j(-||y - x_j||^2 / 2 s^2) x_j. ||y||^2 is common to a row, so it is
    left out; the dot at full precision keeps the logits exact enough at sigma_min."""
    xf, yf = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    dot = jnp.dot(yf, xf.T, precision=jax.lax.Precision.HIGHEST)
    logits = (dot - 0.5 * (xf**2).sum(-1)[None]) / (s.reshape(-1, 1) ** 2)
    if labels is not None:
        logits = jnp.where(labels @ labels.T > 0.5, logits, -jnp.inf)
    return (jax.nn.softmax(logits, -1) @ xf).reshape(y.shape)


def multistep_sample(f, keys, shape, sigmas, sigma_min=0.002):
    """CM Algorithm 1: x = f(sigma_0 z_0, sigma_0); then x = f(x + sqrt(tau^2 - sigma_min^2) z_j, tau).
    Sample i's noises all come from keys[i]."""
    z = lambda j: jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, j), shape))(keys)
    x = f(sigmas[0] * z(0), jnp.full(keys.shape[:1], sigmas[0]))
    for j, tau in enumerate(sigmas[1:], 1):
        x = f(x + math.sqrt(tau**2 - sigma_min**2) * z(j), jnp.full(keys.shape[:1], tau))
    return x
