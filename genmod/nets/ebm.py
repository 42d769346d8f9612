"""Energy networks f(x, c_noise[, label]) -> one scalar per sample (CDRL / DRL).

The architecture of the official CDRL code (``models/ebm.py``, ``toy_example.py``): residual
blocks with leaky-ReLU 0.2, a learned gain on the second layer, the noise embedding added
between the two layers, optional spectral norm everywhere; a final ReLU and a linear read-out
(images: sum over H x W, then an inner product with a noise-dependent vector). Class labels
(one-hot; all-zero = the null class of classifier-free guidance) add a linear embedding to the
mapped noise embedding (``models/ebm_cond.py``). With ``spectral_norm`` the power-iteration
vectors live in the ``batch_stats`` collection and are stored only when ``train=True`` (Flax
runs one iteration from the stored u on every call).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from genmod.nets import conv
from genmod.nets.mlp import fourier_embedding

lrelu = lambda x: nn.leaky_relu(x, 0.2)  # noqa: E731


def _conv3x3(n):
    """3x3 convolution whose input gradient stays an Eigen convolution inside the Langevin loop
    on XLA:CPU (``genmod.nets.conv``; parameters as ``nn.Conv``'s)."""
    return nn.Conv(n, (3, 3), conv_general_dilated=conv.conv_general_dilated)


def _sn(layer, on, train):
    """``layer``, spectrally normalised when ``on`` (u updated only in training)."""
    return (lambda x: nn.SpectralNorm(layer)(x, update_stats=train)) if on else layer


class _Block(nn.Module):
    """h + g * W2 act(act(W1 act(h)) + act(E act(emb))), W = dense (points) or 3x3 conv (images)."""

    out: int
    conv: bool
    sn: bool

    @nn.compact
    def __call__(self, h, emb, train):
        layer = _conv3x3 if self.conv else nn.Dense
        e = lrelu(_sn(nn.Dense(self.out), self.sn, train)(lrelu(emb)))
        y = _sn(layer(self.out), self.sn, train)(lrelu(h))
        y = y + (e[:, None, None] if self.conv else e)
        y = _sn(layer(self.out), self.sn, train)(lrelu(y)) * self.param("g", nn.initializers.ones, (self.out,))
        skip = h if h.shape[-1] == self.out else _sn(layer(self.out), self.sn, train)(h)
        return y + skip


class Energy(nn.Module):
    """``conv=False``: MLP energy for points; ``conv=True``: ResNet energy for NHWC images with
    AvgPool between resolutions (CIFAR-10: ch=128, ch_mult=(1, 2, 2, 2), num_blocks=8)."""

    ch: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_blocks: int = 2
    conv: bool = True
    label_dim: int = 0
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x, noise_labels, class_labels=None, *, train=False):
        sn = lambda layer: _sn(layer, self.spectral_norm, train)  # noqa: E731
        emb = fourier_embedding(noise_labels, self.ch)  # c_noise = 1000 * arctan(e^(-logsnr/2)) / (pi/2)
        emb = sn(nn.Dense(4 * self.ch))(lrelu(sn(nn.Dense(4 * self.ch))(emb)))
        if self.label_dim:  # official y_map: one-hot (null = index 0; here all-zero) -> linear
            lab = jnp.zeros((x.shape[0], self.label_dim)) if class_labels is None else class_labels
            emb = emb + sn(nn.Dense(4 * self.ch))(lab)
        h = sn(_conv3x3(self.ch) if self.conv else nn.Dense(self.ch))(x)
        for i, m in enumerate(self.ch_mult):
            for _ in range(self.num_blocks):
                h = _Block(self.ch * m, self.conv, self.spectral_norm)(h, emb, train)
            if self.conv and i < len(self.ch_mult) - 1:
                h = nn.avg_pool(h, (2, 2), (2, 2))
        h = nn.relu(h)
        if not self.conv:
            return nn.Dense(1, use_bias=False)(h)[:, 0]
        return (h.sum((1, 2)) * nn.Dense(h.shape[-1], use_bias=False)(lrelu(emb))).sum(-1)


def energy(shape, num_classes, **kw):
    """``ebm_net.arch = "genmod.nets.ebm:energy"``: MLP for 1-D data shapes, ResNet for images."""
    return Energy(conv=len(shape) == 3, label_dim=num_classes, **kw)
