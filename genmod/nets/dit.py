"""A plain self-attention transformer over patches (DiT, Peebles & Xie 2023), NHWC.

CrossFlow's backbone: no cross-attention; the only conditioning is the time and a class
label (for CrossFlow the 2-way CFG indicator) entering every block through adaLN-Zero, as in
the DiT port of the CrossFlow code (``t_emb + Embedding(2)[indicator]``). ``Block`` without
a condition is a pre-LN transformer layer, reused by the text Variational Encoder.

``label_init`` is the std of the label embedding (DiT: 0.02). A 2-way CFG indicator seen on
only ~10% of a batch is learned slowly from 0.02 (a product of two near-zero factors through
the zero-initialised adaLN); the short offline CrossFlow runs use 1.0.

Call signature as the other backbones: ``F(x, c_noise, class_labels_onehot, train=...)``.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from genmod.nets.mlp import fourier_embedding

_xavier = nn.initializers.xavier_uniform()
_zeros = nn.initializers.zeros


def sincos_2d(h, w, dim):
    """Fixed 2-D sine-cosine position embedding (MAE/DiT), (h*w, dim)."""
    def one(pos, d):
        om = 1.0 / 10000 ** (np.arange(d // 2) / (d / 2.0))
        a = pos.reshape(-1)[:, None] * om[None]
        return np.concatenate([np.sin(a), np.cos(a)], 1)
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return np.concatenate([one(gy, dim // 2), one(gx, dim // 2)], 1).astype(np.float32)


class Block(nn.Module):
    """Transformer layer. With ``c`` (B, width): DiT's adaLN-Zero (shift, scale, gate per
    sub-layer, regressed from c, zero-initialised so each block starts as the identity);
    without: pre-LN. ``mask`` (B, L) marks valid keys."""

    width: int
    heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, c=None, mask=None, *, train=False):
        ln = lambda: nn.LayerNorm(use_bias=c is None, use_scale=c is None, epsilon=1e-6)
        if c is None:
            mod = [0.0, 0.0, 1.0] * 2
        else:
            mod = jnp.split(nn.Dense(6 * self.width, kernel_init=_zeros)(nn.silu(c))[:, None], 6, -1)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod
        am = None if mask is None else mask[:, None, None, :].astype(bool)
        h = ln()(x) * (1 + scale1) + shift1
        h = nn.MultiHeadDotProductAttention(self.heads, kernel_init=_xavier, dropout_rate=self.dropout,
                                            deterministic=not train)(h, mask=am)
        x = x + gate1 * h
        h = ln()(x) * (1 + scale2) + shift2
        h = nn.Dense(int(self.width * self.mlp_ratio), kernel_init=_xavier)(h)
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.gelu(h, approximate=True))
        return x + gate2 * nn.Dense(self.width, kernel_init=_xavier)(h)


class DiT(nn.Module):
    """Patchify -> ``depth`` adaLN-Zero blocks -> adaLN final layer (zero-init) -> unpatchify."""

    img_resolution: int
    in_channels: int
    out_channels: int
    label_dim: int = 0
    patch: int = 2
    width: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    freq_dim: int = 256
    label_init: float = 0.02  # std of the label (indicator) embedding, DiT's 0.02

    @nn.compact
    def __call__(self, x, noise_labels, class_labels=None, augment_labels=None, *, train=False):
        B, H, W, C = x.shape
        p, n = self.patch, H // self.patch
        if H % p or W % p:
            raise ValueError(f"image {H}x{W} is not divisible by patch {p}")
        h = x.reshape(B, n, p, W // p, p, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, n * (W // p), p * p * C)
        h = nn.Dense(self.width, kernel_init=_xavier)(h) + sincos_2d(n, W // p, self.width)
        init = nn.initializers.normal(0.02)
        c = fourier_embedding(noise_labels, self.freq_dim)
        c = nn.Dense(self.width, kernel_init=init)(nn.silu(nn.Dense(self.width, kernel_init=init)(c)))
        if self.label_dim:  # one-hot @ W == Embedding(label_dim)[label]
            lab = jnp.zeros((B, self.label_dim)) if class_labels is None else class_labels
            c = c + nn.Dense(self.width, use_bias=False, kernel_init=nn.initializers.normal(self.label_init))(
                lab.astype(jnp.float32))
        for _ in range(self.depth):
            h = Block(self.width, self.heads, self.mlp_ratio, self.dropout)(h, c, train=train)
        shift, scale = jnp.split(nn.Dense(2 * self.width, kernel_init=_zeros)(nn.silu(c))[:, None], 2, -1)
        h = nn.LayerNorm(use_bias=False, use_scale=False, epsilon=1e-6)(h) * (1 + scale) + shift
        h = nn.Dense(p * p * self.out_channels, kernel_init=_zeros)(h)
        h = h.reshape(B, n, W // p, p, p, self.out_channels).transpose(0, 1, 3, 2, 4, 5)
        return h.reshape(B, H, W, self.out_channels)


def dit(shape, num_classes=0, **kw):
    """``net.arch = "genmod.nets.dit:dit"``."""
    return DiT(img_resolution=shape[0], in_channels=shape[-1], out_channels=shape[-1], label_dim=num_classes, **kw)


def dit_xl2():
    """DiT-XL/2 (675M at 32x32x4 latents), the CrossFlow code's DiT scale."""
    return dict(patch=2, width=1152, depth=28, heads=16)
