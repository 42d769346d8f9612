"""f-distill (Xu, Nie & Vahdat 2025): DMD2 with the generator gradient weighted per sample by
h(r) = f''(r) r^2, r = p_t / q_t (teacher over student) on the noisy generated sample.

r = exp(clamp(logit, +-10)) clipped to [0.1, 20], the logit being DMD2's GAN head on the
critic's features at the same x_t the DM gradient uses (optimal logit = log p_t / q_t).
Two normalisations keep high-variance f's (forward-KL, Jeffreys) stable: r is divided by a
running mean of r in its sigma bin (``bins`` equal-width bins on [sigma_min, sigma_max], EMA
rate ``ratio_ema``; state in ``state.extra['ratio_bins']``), then h by its batch mean.
Reverse-KL (h = 1) is DMD2 exactly. Everything else (critic, GAN, TTUR) is DMD2's.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from genmod.methods import dmd2

# f and h = f'' r^2 for each divergence (FastGen keys); constants cancel in the batch normalisation
F_DIVS = {
    "rkl": (lambda r: -jnp.log(r), lambda r: jnp.ones_like(r)),                                 # reverse KL
    "sf": (lambda r: (r + 1) * jnp.log(0.5 + 0.5 / r), lambda r: 1 / (1 + r)),                 # softened RKL
    "js": (lambda r: r * jnp.log(r) - (r + 1) * jnp.log((r + 1) / 2), lambda r: r / (r + 1)),  # Jensen-Shannon
    "sh": (lambda r: 1 - jnp.sqrt(r), lambda r: 0.25 * jnp.sqrt(r)),                          # squared Hellinger
    "kl": (lambda r: r * jnp.log(r), lambda r: r),                                              # forward KL
    "jf": (lambda r: (r - 1) * jnp.log(r), lambda r: r + 1),                                    # Jeffreys
    "neyman": (lambda r: (1 - r) ** 2 / r, lambda r: 2 / r),                                   # Neyman chi^2
}


def defaults():
    return ml_collections.ConfigDict(dict(
        f="js",                    # one of F_DIVS
        logit_clamp=10.0, ratio_min=0.1, ratio_max=20.0,
        ratio_norm=True, bins=10, ratio_ema=0.0,   # sigma-binned running mean of r (0: this batch)
    ))


class Method(dmd2.Method):
    dm_features = True

    def __init__(self, config, frozen=None):
        super().__init__(config, frozen)
        self.fc = config.fdistill
        if self.fc.f not in F_DIVS:
            raise ValueError(f"unknown fdistill.f {self.fc.f!r}; valid: {', '.join(F_DIVS)}")
        if self.fc.f != "rkl" and not self.c.gan_critic_weight:
            raise ValueError("f-distill needs the discriminator (dmd2.gan_critic_weight > 0) for the ratio")

    def init_extra(self):
        return {"ratio_bins": jnp.ones((self.fc.bins,), jnp.float32)}

    def ratio(self, logit, sigma, bins):
        """(r, new bins): clamped, clipped density ratio, divided by its sigma-bin running mean."""
        fc, c = self.fc, self.c
        r = jnp.clip(jnp.exp(jnp.clip(logit, -fc.logit_clamp, fc.logit_clamp)), fc.ratio_min, fc.ratio_max)
        if not fc.ratio_norm:
            return r, bins
        width = (c.sigma_max - c.sigma_min) / fc.bins
        idx = jnp.clip(jnp.floor((sigma - c.sigma_min) / width).astype(jnp.int32), 0, fc.bins - 1)
        cnt = jax.ops.segment_sum(jnp.ones_like(r), idx, fc.bins)
        mean = jax.ops.segment_sum(r, idx, fc.bins) / (cnt + 1e-6)
        bins = jnp.where(cnt > 0, fc.ratio_ema * bins + (1 - fc.ratio_ema) * mean, bins)
        return r / (bins[idx] + 1e-6), bins

    def weight(self, p_head, feats, sigma, extra):
        logit = self.head.apply({"params": p_head}, feats)
        r, bins = self.ratio(logit, sigma, extra["ratio_bins"])
        h = F_DIVS[self.fc.f][1](r)
        h = jax.lax.stop_gradient(h / h.mean())  # r >= ratio_min > 0, so mean(h) > 0 for every f
        m = {"fdistill/r_mean": r.mean(), "fdistill/h_max": h.max(), "fdistill/h_min": h.min()}
        return h, {**extra, "ratio_bins": jax.lax.stop_gradient(bins)}, m
