"""CrossFlow's Variational Encoders (source modality -> N(mu, exp(logvar)) with exactly the
target's shape) and the target-feature encoder of the contrastive loss.

* ``SeqVE``: a token sequence (embedded byte tokens, a class label as a 1-token sequence, or
  precomputed language-model features (L, F)) -> ``depth`` transformer layers -> a per-token
  width reduction -> flatten -> Linear to 2 * prod(shape), as the CrossFlow code's text VE
  (there: 11 post-LN layers, 3 halving "reduction" layers; here pre-LN and one Dense).
* ``ImageVE``: an (upsampled low-res) image -> a residual conv net; mu starts at the input,
  so image-to-image flows begin at the identity map.
* ``Features``: target -> a feature vector of the latent's size plus the learned logit scale
  (CrossFlow: a SigLIP vision tower trained from scratch + adaptor; here a small conv net).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from genmod.nets.dit import Block


class SeqVE(nn.Module):
    shape: tuple
    vocab: int = 257          # byte tokens + pad; ignored for float features
    max_len: int = 32
    width: int = 256
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    reduce: int = 16          # per-token width before flattening
    dropout: float = 0.0
    logvar_init: float = 0.0

    @nn.compact
    def __call__(self, seq, mask=None, *, train=False):
        B, L = seq.shape[:2]
        mask = jnp.ones((B, L)) if mask is None else mask.astype(jnp.float32)
        if jnp.issubdtype(seq.dtype, jnp.integer):
            h = nn.Embed(self.vocab, self.width)(seq)
        else:
            h = nn.Dense(self.width)(seq)
        h = h + self.param("pos", nn.initializers.normal(0.02), (self.max_len, self.width))[:L]
        for _ in range(self.depth):
            h = Block(self.width, self.heads, self.mlp_ratio, self.dropout)(h, mask=mask, train=train)
        h = nn.Dense(self.reduce)(nn.LayerNorm()(h)) * mask[..., None]  # padding cannot leak in
        D = int(np.prod(self.shape))
        out = nn.Dense(2 * D, bias_init=lambda *_: jnp.concatenate([jnp.zeros(D), jnp.full(D, self.logvar_init)]))(
            h.reshape(B, -1))
        return out[:, :D].reshape((B,) + tuple(self.shape)), out[:, D:].reshape((B,) + tuple(self.shape))


class ImageVE(nn.Module):
    width: int = 64
    depth: int = 2
    logvar_init: float = 0.0

    @nn.compact
    def __call__(self, x, *, train=False):
        C = x.shape[-1]
        h = nn.Conv(self.width, (3, 3))(x)
        for _ in range(self.depth):
            h = h + nn.Conv(self.width, (3, 3))(nn.silu(nn.Conv(self.width, (3, 3))(nn.silu(h))))
        out = nn.Conv(2 * C, (3, 3), kernel_init=nn.initializers.zeros)(nn.silu(h))
        return x + out[..., :C], out[..., C:] + self.logvar_init


class Features(nn.Module):
    """Target -> (B, dim) features; stride-2 convs down to <= 8 px for images, then an MLP."""

    dim: int
    width: int = 64
    hidden: int = 512
    logit_scale_init: float = math.log(1 / 0.07)

    @nn.compact
    def __call__(self, x, *, train=False):
        self.param("logit_scale", nn.initializers.constant(self.logit_scale_init), ())
        h = x
        if x.ndim == 4:
            h = nn.silu(nn.Conv(self.width, (3, 3))(h))
            while h.shape[1] > 8:
                h = nn.silu(nn.Conv(self.width, (3, 3), strides=2)(h))
        h = nn.silu(nn.Dense(self.hidden)(h.reshape(x.shape[0], -1)))
        return nn.Dense(self.dim)(h)
