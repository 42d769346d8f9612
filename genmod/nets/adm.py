"""ADM U-Net (Dhariwal & Nichol 2021) as configured in EDM (``DhariwalUNet``), Flax linen, NHWC.

The layout follows EDM's ``DhariwalUNet`` (NVlabs/edm ``training/networks.py``) so that its
state dict maps onto this parameter tree with :func:`genmod.nets.unet.params_from_torch_state_dict`
(module names ``enc.64x64_block0.conv0`` -> ``enc_64x64_block0/conv0``, the same rules as
SongUNet). It reuses SongUNet's layers (``unet.Conv2d``, ``unet.UNetBlock``); what differs from
SongUNet is ADM's recipe:

* blocks use adaptive (scale, shift) group norm, skip_scale 1, eps 1e-5, no 1x1 projection on
  resampling skips, box resampling, and one attention head per 64 channels (a block narrower
  than 64 channels has none, as in EDM);
* the noise embedding is ``[cos, sin]`` of EDM's ``PositionalEmbedding(endpoint=False)`` over
  ``model_channels``; class labels enter through a bias-free linear layer after ``map_layer1``
  (no sqrt(label_dim) input scaling); the first conv is ``model_channels * channel_mult[0]`` wide;
* every decoder block at an attention resolution attends (SongUNet: only the last one), and the
  output is ``out_conv(silu(out_norm(x)))``;
* init: kaiming-uniform weights and biases scaled by sqrt(1/3) (PyTorch's default), zeros for
  ``conv1``/``proj``/``out_conv``/``map_augment``, ``map_label`` ~ N(0, 1) (EDM's values).

Defaults are EDM's ImageNet-64 network (``--arch=adm``, 296M parameters with 1000 classes).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genmod.nets.unet import Conv2d, UNetBlock, _group_norm, decoder_level, dense, positional_freqs

_INIT = dict(init_mode="kaiming_uniform", init_weight=float(np.sqrt(1 / 3)), init_bias=float(np.sqrt(1 / 3)))


class DhariwalUNet(nn.Module):
    """ADM U-Net, NHWC. ``__call__(x, noise_labels, class_labels=None, augment_labels=None, *,
    train=False, return_bottleneck=False)`` like :class:`genmod.nets.unet.SongUNet`."""

    img_resolution: int
    in_channels: int
    out_channels: int
    label_dim: int = 0
    augment_dim: int = 0
    model_channels: int = 192
    channel_mult: Sequence[int] = (1, 2, 3, 4)
    channel_mult_emb: int = 4
    num_blocks: int = 3
    attn_resolutions: Sequence[int] = (32, 16, 8)
    dropout: float = 0.10
    label_dropout: float = 0.0
    channels_per_head: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, noise_labels, class_labels=None, augment_labels=None, *,
                 train: bool = False, return_bottleneck: bool = False):
        if x.ndim != 4 or x.shape[1] != self.img_resolution or x.shape[2] != self.img_resolution:
            raise ValueError(f"expected x of shape (B, {self.img_resolution}, {self.img_resolution}, C), "
                             f"got {x.shape}")
        if self.img_resolution % (1 << (len(self.channel_mult) - 1)):
            raise ValueError("img_resolution must be divisible by 2**(len(channel_mult) - 1)")
        dt, mc, batch = self.dtype, self.model_channels, x.shape[0]
        emb_ch = mc * self.channel_mult_emb

        def block(cout, name, attention=False, **kw):
            heads = cout // self.channels_per_head if attention else 0
            return UNetBlock(cout, attention=attention, num_heads=heads, dropout=self.dropout,
                             skip_scale=1.0, eps=1e-5, resample_filter=(1, 1), resample_proj=False,
                             adaptive_scale=True, init_zero_weight=0.0, init_attn_weight=_INIT["init_weight"],
                             dtype=dt, name=name, **_INIT, **kw)

        # Mapping (float32).
        a = noise_labels.astype(jnp.float32)[:, None] * jnp.asarray(positional_freqs(mc))[None]
        emb = jnp.concatenate([jnp.cos(a), jnp.sin(a)], axis=-1)
        if self.augment_dim:
            aug = (jnp.zeros((batch, self.augment_dim), jnp.float32) if augment_labels is None
                   else augment_labels.astype(jnp.float32))
            emb = emb + dense(mc, "map_augment", use_bias=False, init_mode="kaiming_uniform",
                              init_weight=0.0)(aug)
        emb = nn.silu(dense(emb_ch, "map_layer0", **_INIT)(emb))
        emb = dense(emb_ch, "map_layer1", **_INIT)(emb)
        if self.label_dim:
            labels = (jnp.zeros((batch, self.label_dim), jnp.float32) if class_labels is None
                      else class_labels.astype(jnp.float32).reshape(batch, self.label_dim))
            if train and self.label_dropout:
                u = jax.random.uniform(self.make_rng("dropout"), (batch, 1))
                labels = labels * (u >= self.label_dropout).astype(labels.dtype)
            emb = emb + dense(emb_ch, "map_label", use_bias=False, init_mode="kaiming_normal",
                              init_weight=float(np.sqrt(self.label_dim)))(labels)
        emb = nn.silu(emb)

        # Encoder.
        x = x.astype(dt)
        skips = []
        cout = self.in_channels
        for level, mult in enumerate(self.channel_mult):
            res = self.img_resolution >> level
            r = f"{res}x{res}"
            if level == 0:
                cout = mc * mult
                x = Conv2d(cout, 3, dtype=dt, name=f"enc_{r}_conv", **_INIT)(x)
            else:
                x = block(cout, f"enc_{r}_down", down=True)(x, emb, train)
            skips.append(x)
            for idx in range(self.num_blocks):
                cout = mc * mult
                x = block(cout, f"enc_{r}_block{idx}", attention=res in self.attn_resolutions)(x, emb, train)
                skips.append(x)
        bottleneck = x

        # Decoder.
        last = len(self.channel_mult) - 1
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            res = self.img_resolution >> level
            r = f"{res}x{res}"
            x = decoder_level(block, x, emb, train, skips, r, level == last, cout, mc * mult, self.num_blocks,
                              lambda idx: res in self.attn_resolutions)
            cout = mc * mult
        assert not skips
        x = nn.silu(_group_norm(cout, 1e-5, dt, "out_norm")(x))
        out = Conv2d(self.out_channels, 3, dtype=dt, name="out_conv", init_mode="kaiming_uniform",
                     init_weight=0.0)(x).astype(jnp.float32)
        if return_bottleneck:
            return out, bottleneck.astype(jnp.float32)
        return out


def adm_imagenet64() -> dict:
    """EDM ``--arch=adm`` (ImageNet-64): kwargs besides resolution / channels / label_dim."""
    return dict(model_channels=192, channel_mult=(1, 2, 3, 4), channel_mult_emb=4, num_blocks=3,
                attn_resolutions=(32, 16, 8), dropout=0.1)
