"""Small MLP backbone for 2-D data: same call signature as the U-Net backbones."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def fourier_embedding(t, dim, max_period=10000.0):
    """Sinusoidal embedding of a scalar per sample (DDPM positional style)."""
    half = dim // 2
    freqs = np.exp(-np.log(max_period) * np.arange(half) / half).astype(np.float32)
    a = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(a), jnp.sin(a)], -1)


class MLP(nn.Module):
    """x -> F(x, c_noise[, label]) for points; noise level and label enter as embeddings."""

    out_dim: int = 2
    hidden: Sequence[int] = (256, 256, 256)
    emb_dim: int = 64
    noise_scale: float = 100.0  # c_noise values are O(1); spread them over the sinusoid bands
    label_dim: int = 0
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, noise_labels, class_labels=None, *, train=False, return_bottleneck=False):
        """``return_bottleneck``: also return the last hidden features (B, hidden[-1]), as
        SongUNet does, for heads that read the backbone (e.g. DMD2's GAN classifier)."""
        emb = fourier_embedding(noise_labels * self.noise_scale, self.emb_dim)
        emb = nn.Dense(self.emb_dim)(nn.silu(nn.Dense(self.emb_dim)(emb)))
        if self.label_dim and class_labels is not None:
            emb = emb + nn.Dense(self.emb_dim, use_bias=False)(class_labels)  # one-hot labels
        h = nn.Dense(self.hidden[0])(x)
        for w in self.hidden:
            h = nn.silu(h + nn.Dense(h.shape[-1])(emb))
            h = nn.Dense(w)(h)
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        feats = nn.silu(h)
        out = nn.Dense(self.out_dim, kernel_init=nn.initializers.zeros)(feats)
        return (out, feats) if return_bottleneck else out
