"""CrossFlow (Liu et al., CVPR 2025): flow matching from a source modality to the target.

A Variational Encoder (``ve``) maps the source (caption tokens, precomputed language-model
features, a class label, or an upsampled low-res image) to N(mu, sigma^2) with exactly the
target's shape; its sample z0 is the flow's starting point (no noise source, no
cross-attention). Trained jointly from scratch (Liu et al. Table 3: joint beats 2-stage):

    L = L_FM(z0 -> x1) + clip_weight * L_CLIP(z0, enc(x1)) + kl_weight * KL(ve)

CFG without a condition input: a ``p_uncond`` subset gets the 'null' indicator and another
sample's target (``crossflow.derange``); sampling uses v_u + w (v_c - v_u). Networks:
``net`` (the flow backbone, a 2-way label = the indicator), ``ve``, ``enc`` (target features
+ logit scale, trained only through the contrastive loss); EMA on ``net`` and ``ve``.

Explicit APIs beyond the loop's ``sample``: ``condition(captions=|label=|image=)``,
``encode(params, cond, keys)`` -> z0, ``decode(params, z0, guidance, nfe)`` -> x,
``generate(params, cond, keys, guidance, nfe)``; latent arithmetic in ``genmod.crossflow``.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genmod import crossflow as cf, data as data_lib, flow, method, nets
from genmod.nets import ve as ve_nets

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def defaults():
    """The ``config.crossflow`` block (paper values where they exist; see configs/crossflow_*)."""
    return ml_collections.ConfigDict(dict(
        source="text",              # text | class | image
        class_names=DIGIT_NAMES,    # text: captions built from labels ...
        templates=("a handwritten {}",),  # ... one template drawn per sample in training
        max_len=32,                 # byte tokens
        features="",                # npz of LM features indexed by label: features (K[,J],L,F) [mask, captions]
        factor=2,                   # image: super-resolution factor (box down, bicubic up)
        eval_split="test", eval_size=1024,  # image: held-out pool that ``sample`` draws by seed
        ve=dict(width=128, depth=2, heads=4, reduce=8, mlp_ratio=4.0, dropout=0.0, logvar_init=0.0),
        stochastic=True,            # False: z0 = mu (the deterministic-encoder ablation)
        kl="standard", kl_weight=1e-4,      # paper; the code: kl="official", kl_weight=1e-2
        enc=dict(width=64, hidden=512), clip_weight=1.0, logit_scale="raw",  # raw: the code; exp: paper
        p_uncond=0.1, sigma_min=1e-5, t_dist="logit_normal",
        t_scale=1000.0,             # the backbone sees c_noise = t_scale * t
        solver="crossflow",         # crossflow (the code's Euler grid) | euler | heun
        guidance=1.0, scale=1.0,    # CFG weight w at sampling; latent scale (SD-VAE: 0.23010)
    ))


def up(lowres, shape):
    """Bicubic upsampling to the target size: the image source and the SR baseline."""
    return jax.image.resize(lowres, lowres.shape[:1] + tuple(shape), "cubic")


def down(x, f):
    """Box-filter downsampling by ``f`` (what a sensor integrating f x f pixels records)."""
    B, H, W, C = x.shape
    return x.reshape(B, H // f, f, W // f, f, C).mean((2, 4))


def _check(cc, shape, num_classes):
    """Bad settings -> one clear ValueError line."""
    for key, valid in (("source", ("text", "class", "image")), ("kl", ("standard", "official")),
                       ("solver", ("crossflow", "euler", "heun")), ("logit_scale", ("raw", "exp")),
                       ("t_dist", ("logit_normal", "uniform"))):
        if cc[key] not in valid:
            raise ValueError(f"crossflow.{key}={cc[key]!r}; valid: {', '.join(valid)}")
    if cc.source in ("text", "class") and not num_classes:
        raise ValueError(f"crossflow.source={cc.source!r} builds its condition from labels: set data.num_classes")
    if cc.source == "image" and (len(shape) != 3 or shape[0] % cc.factor or shape[1] % cc.factor):
        raise ValueError(f"crossflow.factor={cc.factor} does not divide the image shape {tuple(shape)}")


class Method(method.Method):
    def __init__(self, config, frozen=None):
        super().__init__(config, frozen)
        c, cc = config, config.crossflow
        self.shape, self.num_classes = tuple(c.data.shape), c.data.num_classes
        _check(cc, self.shape, self.num_classes)
        self.net = nets.build(c.net, self.shape, 2)  # label = the CFG indicator
        v = dict(cc.ve)
        if cc.source == "image":
            self.ve = ve_nets.ImageVE(v["width"], v["depth"], v["logvar_init"])
        else:
            self.table, self.mask, self.captions, vocab = self._table(cc)
            self.ve = ve_nets.SeqVE(self.shape, vocab=vocab, max_len=self.table.shape[-1 if vocab else -2], **v)
        self.enc = ve_nets.Features(int(np.prod(self.shape)), **dict(cc.enc))
        self.names = ("net", "ve", "enc")
        self.opt = {n: method.make_optimizer(c.optim.get(n, c.optim.net), c.batch_size, c.total_steps)
                    for n in self.names}

    # -- source modality ---------------------------------------------------------------------
    def _table(self, cc):
        """(K, J, L[, F]) condition table indexed by (label, template), mask, captions, vocab."""
        if cc.source == "class":
            return np.arange(self.num_classes, dtype=np.int32)[:, None, None], None, None, self.num_classes
        if cc.features:
            if not os.path.exists(cc.features):
                raise ValueError(f"crossflow.features: file not found: {cc.features}")
            with np.load(cc.features, allow_pickle=False) as f:
                feat = f["features"].astype(np.float32)
                if feat.ndim not in (3, 4) or len(feat) < self.num_classes:
                    raise ValueError(f"{cc.features}: features must be (K[, J], L, F) with K >= num_classes="
                                     f"{self.num_classes}, got {feat.shape}")
                feat = feat[:, None] if feat.ndim == 3 else feat
                mask = f["mask"].reshape(feat.shape[:3]).astype(np.float32) if "mask" in f else np.ones(feat.shape[:3], np.float32)
                caps = f["captions"].reshape(feat.shape[:2]) if "captions" in f else None
            return feat, mask, caps, 0
        caps = np.array([[t.format(n) for t in cc.templates] for n in cc.class_names])
        tok, mask = cf.tokenize(caps.reshape(-1).tolist(), cc.max_len)
        return tok.reshape(caps.shape + (-1,)), mask.reshape(caps.shape + (-1,)), caps, 257

    def _from_table(self, label, j):
        return {"seq": jnp.asarray(self.table)[label, j],
                **({} if self.mask is None else {"mask": jnp.asarray(self.mask)[label, j]})}

    def _pool(self):
        """Held-out images (N, H, W, C) in [-1, 1] that ``sample`` conditions on by seed."""
        if not hasattr(self, "_eval"):
            d = self.config.data
            src = data_lib.open_source(d.source, self.config.crossflow.eval_split)
            img = src.get(np.arange(min(len(src), self.config.crossflow.eval_size)))["image"]
            self._eval = data_lib._resize(img, self.shape[0], d.get("resize", "none")).astype(np.float32) / 127.5 - 1
        return self._eval

    def source(self, batch, key):
        """The VE's input for a training batch (``seq``/``mask`` in the batch win, for
        pipelines that carry per-example captions or features)."""
        cc = self.config.crossflow
        if "seq" in batch:
            return {"seq": batch["seq"], **({"mask": batch["mask"]} if "mask" in batch else {})}
        if cc.source == "image":
            return {"image": up(down(batch["x"] * cc.scale, cc.factor), self.shape)}
        j = jax.random.randint(key, batch["label"].shape, 0, self.table.shape[1])
        return self._from_table(batch["label"], j)

    def condition(self, captions=None, label=None, image=None):
        """A condition batch from captions, labels (first template) or low-res images."""
        cc = self.config.crossflow
        if image is not None:
            return {"image": up(jnp.asarray(image, jnp.float32) * cc.scale, self.shape)}
        if label is not None:
            return self._from_table(jnp.asarray(label, jnp.int32), 0)
        if cc.source != "text":
            raise ValueError(f"captions need crossflow.source='text', not {cc.source!r}")
        if self.table.dtype != np.int32:  # precomputed features: look the caption up
            flat = [] if self.captions is None else self.captions.reshape(-1).tolist()
            miss = [s for s in captions if s not in flat]
            if miss:
                raise ValueError(f"caption {miss[0]!r} has no precomputed features in {cc.features}")
            i = np.array([flat.index(s) for s in captions])
            return self._from_table(i // self.table.shape[1], i % self.table.shape[1])
        tok, mask = cf.tokenize(list(captions), self.table.shape[-1])
        return {"seq": jnp.asarray(tok), "mask": jnp.asarray(mask)}

    def sample_condition(self, keys):
        """Each seed's condition: a class (caption template 0) or a held-out image."""
        if self.config.crossflow.source == "image":
            pool = self._pool()
            i = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 1), (), 0, len(pool)))(keys)
            return self.condition(image=down(jnp.asarray(pool)[i], self.config.crossflow.factor))
        lab = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 1), (), 0, self.table.shape[0]))(keys)
        return self.condition(label=lab)

    # -- networks ----------------------------------------------------------------------------
    def _ve(self, p, cond, train=False, key=None):
        rngs = {"dropout": key} if train else {}
        if "image" in cond:
            return self.ve.apply({"params": p}, cond["image"], train=train, rngs=rngs)
        return self.ve.apply({"params": p}, cond["seq"], cond.get("mask"), train=train, rngs=rngs)

    def _F(self, p, train=False, key=None):
        """F(z, t, null): the backbone's velocity with the indicator as its 2-way label."""
        rngs = {"dropout": key} if train else {}
        t_scale = self.config.crossflow.t_scale
        return lambda z, t, null: self.net.apply({"params": p}, z, jnp.broadcast_to(t_scale * t, z.shape[:1]),
                                                 cf.indicator(null), train=train, rngs=rngs)

    def init(self, rng, batch):
        kn, kv, ke = jax.random.split(rng, 3)
        x = batch["x"]
        if "label" not in batch:
            batch = {**batch, "label": jnp.zeros(x.shape[:1], jnp.int32)}
        cond = self.source(batch, rng)
        params = {"net": self.net.init({"params": kn}, x, jnp.ones(x.shape[:1]), cf.indicator(jnp.zeros(x.shape[:1])))["params"],
                  "ve": (self.ve.init({"params": kv}, cond["image"]) if "image" in cond
                         else self.ve.init({"params": kv}, cond["seq"], cond.get("mask")))["params"],
                  "enc": self.enc.init({"params": ke}, x)["params"]}
        return method.new_state(rng, params, {n: self.opt[n][0] for n in self.names}, ema=("net", "ve"))

    # -- training ----------------------------------------------------------------------------
    def rules(self):
        return {"train": self.train_step}

    def train_step(self, state, batch, frozen):
        c, cc = self.config, self.config.crossflow
        k_t, k_z, k_null, k_src, k_drop, k_vd = jax.random.split(state.key(), 6)
        x1 = batch["x"] * cc.scale
        B = x1.shape[0]
        cond = self.source(batch, k_src)
        t = flow.sample_t(k_t, B, cc.t_dist)
        x1_cfg, null = cf.derange(k_null, x1, cc.p_uncond)

        def loss_fn(p):
            mu, logvar = self._ve(p["ve"], cond, True, k_vd)
            z0 = cf.reparameterize(k_z, mu, logvar) if cc.stochastic else mu
            F = self._F(p["net"], True, k_drop)
            fm = flow.fm_loss(lambda z, t: F(z, t, null), z0, x1_cfg, t, cc.sigma_min).mean()
            scale = cf.logit_scale(p["enc"]["logit_scale"], cc.logit_scale)
            clip = cf.clip_loss(z0.reshape(B, -1), self.enc.apply({"params": p["enc"]}, x1), scale)
            kl = cf.kl(mu, logvar, cc.kl).mean()
            loss = fm + cc.clip_weight * clip + cc.kl_weight * kl
            return loss, {"train/loss": loss, "train/fm_loss": fm, "train/clip_loss": clip, "train/kl": kl,
                          "train/logit_scale": scale, "train/sigma_ve": jnp.exp(0.5 * logvar).mean(),
                          "train/null_frac": null.mean()}

        (_, metrics), g = jax.value_and_grad(loss_fn, has_aux=True)({n: state.params[n] for n in self.names})
        beta = method.ema_decay(state.step, c.batch_size, c.ema.halflife_img, c.ema.rampup)
        for n in self.names:
            state, m = method.apply_update(state, n, g[n], *self.opt[n], beta)
            metrics.update(m)
        return method.finish_step(state, metrics)

    # -- sampling ----------------------------------------------------------------------------
    def encode(self, params, cond, keys):
        """z0 ~ VE(cond), each sample's noise from its own key."""
        mu, logvar = self._ve(params["ve"], cond)
        if not self.config.crossflow.stochastic:
            return mu
        eps = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 2), mu.shape[1:]))(keys)
        return mu + jnp.exp(0.5 * logvar) * eps

    def decode(self, params, z0, guidance=None, nfe=None):
        """The ODE from z0 (t = 0) to the target (t = 1) with CFG weight ``guidance``."""
        c, cc = self.config, self.config.crossflow
        v = cf.guided(self._F(params["net"]), cc.guidance if guidance is None else guidance)
        n = nfe or c.sample.nfe
        if cc.solver == "crossflow":
            x = cf.crossflow_euler(v, z0, n, cc.sigma_min)
        else:
            x = flow.ode_sampler(v, z0, (n + 1) // 2 if cc.solver == "heun" else n, cc.solver)
        return x / cc.scale

    def nfe_used(self, nfe=None):
        return method.ode_nfe_used(nfe or self.config.sample.nfe, self.config.crossflow.solver)

    def generate(self, params, cond, keys, guidance=None, nfe=None):
        return self.decode(params, self.encode(params, cond, keys), guidance, nfe)

    def sample(self, params, keys, frozen, nfe=None):
        return self.generate(params, self.sample_condition(keys), keys, None, nfe)
