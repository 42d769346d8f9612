"""EDM's non-leaky augmentation (Karras et al. 2022; NVlabs/edm training/augment.py), in JAX.

EDM's CIFAR-10 runs (``train.py --augment=0.12``) build ``AugmentPipe(p, xflip=1e8, yflip=1,
scale=1, rotate_frac=1, aniso=1, translate_frac=1)`` and set the network's ``augment_dim=9``:
the network sees which augmentation was applied (a 9-vector per image, zero for none) and is
sampled with zero labels, so the augmentations do not leak into the samples. This module is
that geometric pipeline (EDM's colour transforms are off there), with the same label layout
(an imported EDM network with ``augment_dim`` 9 sees the same vector):

    [xflip, yflip, scale, cos(rot) - 1, sin(rot), aniso cos(phi), aniso sin(phi), tx, ty]

Drawing and applying are separate (``draw`` -> ``apply`` / ``labels``) so that a test can give
EDM's code the same parameters; ``augment(key, x, p)`` does both. The warp is EDM's: reflect
padding, 2x upsampling with the sym6 wavelet filter, bilinear resampling, filtered 2x
downsampling. As in EDM, the padding is computed from the whole batch and every image goes
through the warp once p > 0 (one drawn no transform comes back within ~3e-7, zero labels);
p = 0 returns the input unchanged. Shapes stay static, so it runs under jit. Matches EDM's
output to ~1e-5 for the same parameters (tests/test_augment.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

LABEL_DIM = 9
# AugmentPipe defaults behind EDM's settings: log2 std of the isotropic / anisotropic scale,
# std of the fractional translation (in image sizes), probability of a rotated aniso frame.
SCALE_STD, ANISO_STD, TRANSLATE_STD, ANISO_ROTATE_PROB = 0.2, 0.2, 0.125, 0.5
XFLIP = 1e8  # EDM's x-flip multiplier: once p > 0 every image is flipped with probability 1/2
# Symlet-6 low-pass (decomposition) filter, the resampling filter of EDM's warp.
SYM6 = np.array([0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
                 0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
                 -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148],
                np.float32)
PARAMS = ("xflip", "yflip", "scale", "rotate", "aniso", "aniso_angle", "tx", "ty")


def draw(key, n, p):
    """Per-image parameters, each (n,) float32 and zero where its augmentation is skipped:
    flips (0/1), ``scale`` / ``aniso`` (N(0, 1) draws: log2 factors / their std), ``rotate``
    and ``aniso_angle`` (radians), ``tx`` / ``ty`` (N(0, 1) draws: shifts / (size * 0.125))."""
    k = jax.random.split(key, 14)
    u = lambda i: jax.random.uniform(k[i], (n,))  # noqa: E731
    gate = lambda i, v, mult=1.0: jnp.where(u(i) < mult * p, v, 0)  # noqa: E731
    coin = lambda i: jax.random.bernoulli(k[i], 0.5, (n,))  # noqa: E731
    angle = lambda i: jax.random.uniform(k[i], (n,), minval=-np.pi, maxval=np.pi)  # noqa: E731
    t = gate(13, jax.random.normal(k[12], (2, n)))
    out = dict(xflip=gate(1, coin(0), XFLIP), yflip=gate(3, coin(2)),
               scale=gate(5, jax.random.normal(k[4], (n,))), rotate=gate(7, angle(6)),
               aniso=gate(9, jax.random.normal(k[8], (n,))),
               aniso_angle=jnp.where(u(11) < ANISO_ROTATE_PROB, angle(10), 0),  # not scaled by p
               tx=t[0], ty=t[1])
    return {name: v.astype(jnp.float32) for name, v in out.items()}


def labels(prm):
    """(n, 9) augmentation labels in EDM's order; all zero for an image left as it is."""
    r, a, phi = prm["rotate"], prm["aniso"], prm["aniso_angle"]
    return jnp.stack([prm["xflip"], prm["yflip"], prm["scale"], jnp.cos(r) - 1, jnp.sin(r),
                      a * jnp.cos(phi), a * jnp.sin(phi), prm["tx"], prm["ty"]], axis=1)


def _mat(rows):
    """(n, 3, 3) from 3 x 3 nested entries, each a scalar or an (n,) array."""
    n = max(np.shape(e)[0] for row in rows for e in row if np.ndim(e))
    return jnp.stack([jnp.stack([jnp.broadcast_to(jnp.asarray(e, jnp.float32), (n,)) for e in row], -1)
                      for row in rows], -2)


def _rot(t):
    c, s = jnp.cos(t), jnp.sin(t)
    return _mat([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _scale(sx, sy):
    return _mat([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def _shift(tx, ty):
    return _mat([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def inverse_matrix(prm, height, width):
    """Output -> input pixel coordinates (centred), (n, 3, 3): isotropic scale, rotation,
    anisotropic scale in a rotated frame, translation, composed as EDM composes them."""
    s = 2.0 ** (-SCALE_STD * prm["scale"])
    a = 2.0 ** (ANISO_STD * prm["aniso"])
    phi = prm["aniso_angle"]
    return (_scale(s, s) @ _rot(prm["rotate"]) @ _rot(-phi) @ _scale(1 / a, a) @ _rot(phi)
            @ _shift(-prm["tx"] * width * TRANSLATE_STD, -prm["ty"] * height * TRANSLATE_STD))


def _filter(x, taps, axis, up=False):
    """Depthwise 1-D filtering of NHWC ``x`` along ``axis`` (1: rows, 2: columns): ``up``
    zero-interleaves then convolves (length 2L, EDM's upsampling), else convolves with stride 2."""
    C, K = x.shape[-1], len(taps)
    shape = (K, 1, 1, C) if axis == 1 else (1, K, 1, C)
    w = jnp.broadcast_to(jnp.asarray(taps, x.dtype).reshape(shape[:2] + (1, 1)), shape)
    pad = [(0, 0), (0, 0)]
    pad[axis - 1] = ((K + 1) // 2,) * 2 if up else ((K - 1) // 2,) * 2
    dil, stride = [1, 1], [1, 1]
    (dil if up else stride)[axis - 1] = 2
    return jax.lax.conv_general_dilated(x, w, window_strides=stride, padding=pad, lhs_dilation=dil,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=C,
                                        precision=jax.lax.Precision.HIGHEST)


def _bilinear(img, ix, iy):
    """Bilinear samples of (H, W, C) ``img`` at pixel coordinates, zero outside."""
    H, W = img.shape[:2]
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    out = 0.0
    for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        w = (1 - jnp.abs(ix - xi)) * (1 - jnp.abs(iy - yi)) * ((xi >= 0) & (xi < W) & (yi >= 0) & (yi < H))
        v = img[jnp.clip(yi, 0, H - 1).astype(jnp.int32), jnp.clip(xi, 0, W - 1).astype(jnp.int32)]
        out = out + w[..., None] * v
    return out


def warp(x, G_inv):
    """EDM's filtered geometric warp of NHWC ``x`` by inverse matrices ``G_inv`` (n, 3, 3).

    Every image is reflect-padded by the largest margin the batch needs (EDM pads the batch
    by one margin), upsampled 2x with sym6, resampled bilinearly, then low-passed and
    decimated. Here the padding is a fixed max(H, W) - 1 canvas masked to that margin, so the
    shapes never depend on the data and the result equals EDM's padded-image computation."""
    N, H, W, C = x.shape
    hp = len(SYM6) // 4
    cx, cy = (W - 1) / 2, (H - 1) / 2
    corners = jnp.array([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]], jnp.float32)
    q = (G_inv @ corners)[:, :2]  # (n, 2, 4): where the output corners come from
    lo = jnp.max(-q, axis=(0, 2)) + jnp.array([2 * hp - cx, 2 * hp - cy])
    hi = jnp.max(q, axis=(0, 2)) + jnp.array([2 * hp - cx, 2 * hp - cy])
    size = jnp.array([W - 1, H - 1], jnp.float32)
    lo, hi = jnp.ceil(jnp.clip(lo, 0, size)), jnp.ceil(jnp.clip(hi, 0, size))  # (mx0, my0), (mx1, my1)
    Px, Py = W - 1, H - 1
    xp = jnp.pad(x, ((0, 0), (Py, Py), (Px, Px), (0, 0)), mode="reflect")

    def mask(img, scale):  # zero outside EDM's padded image (scaled to the current resolution)
        r = jnp.arange(img.shape[1])[:, None]
        c = jnp.arange(img.shape[2])[None, :]
        inside = ((c >= scale * (Px - lo[0])) & (c < scale * (Px + W + hi[0]))
                  & (r >= scale * (Py - lo[1])) & (r < scale * (Py + H + hi[1])))
        return img * inside[None, :, :, None]

    up = mask(_filter(_filter(mask(xp, 1), SYM6[::-1], 2, up=True), SYM6[::-1], 1, up=True), 2)
    Ho, Wo = 2 * (H + 2 * hp), 2 * (W + 2 * hp)
    oy, ox = jnp.meshgrid(jnp.arange(Ho, dtype=jnp.float32), jnp.arange(Wo, dtype=jnp.float32), indexing="ij")
    pts = jnp.stack([(ox + 1) / 2 - (W + 2 * hp) / 2, (oy + 1) / 2 - (H + 2 * hp) / 2, jnp.ones_like(ox)])
    src = jnp.einsum("nij,jhw->nihw", G_inv[:, :2], pts, precision=jax.lax.Precision.HIGHEST)
    ix = 2 * src[:, 0] + (W - 1) + 2 * Px  # pixel coordinates in the 2x canvas
    iy = 2 * src[:, 1] + (H - 1) + 2 * Py
    out = jax.vmap(_bilinear)(up, ix, iy)
    out = _filter(out, SYM6, 2)[:, :, hp:-hp]
    return _filter(out, SYM6, 1)[:, hp:-hp]


def apply(x, prm):
    """Augmented NHWC images: flips, then the geometric warp (EDM's order)."""
    flip = lambda v: v.astype(bool)[:, None, None, None]  # noqa: E731
    x = jnp.where(flip(prm["xflip"]), x[:, :, ::-1], x)
    x = jnp.where(flip(prm["yflip"]), x[:, ::-1], x)
    return warp(x, inverse_matrix(prm, x.shape[1], x.shape[2])).astype(x.dtype)


def augment(key, x, p):
    """(augmented x, (n, 9) labels) for NHWC images; ``p`` = 0 returns x and zero labels."""
    if not p:
        return x, jnp.zeros((x.shape[0], LABEL_DIM), jnp.float32)
    prm = draw(key, x.shape[0], p)
    return apply(x, prm), labels(prm)
