"""Offline image quality for small benchmarks: Frechet distance and precision/recall in the
features of a seeded digit classifier trained on the spot (no download, no Inception).

Inception features mean little on 8x8 digits and its weights are a download; a classifier
trained on the same 1,797 scikit-learn digits gives a feature space that knows what a digit
looks like, in seconds, identically on every machine (seeded, full-batch, float32 CPU). The
numbers are comparable with each other, never with published FIDs: call it FD_digits.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from genmod.eval import fid


class Classifier(nn.Module):
    width: int = 128
    features: int = 64

    @nn.compact
    def __call__(self, x):
        h = nn.gelu(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))
        f = nn.gelu(nn.Dense(self.features)(h))
        return nn.Dense(10)(f), f


def _scale(images_uint8):
    return jnp.asarray(images_uint8, jnp.float32) / 127.5 - 1.0


@functools.lru_cache(maxsize=2)
def digits_classifier(seed: int = 0, steps: int = 600, holdout: int = 297):
    """(params, test accuracy): trained on all but the last ``holdout`` digits, full batch."""
    from genmod.data import open_source

    src = open_source("digits")
    img, lab = src.arrays["image"], src.arrays["label"]
    perm = np.random.default_rng(seed).permutation(len(img))
    tr, te = perm[:-holdout], perm[-holdout:]
    net = Classifier()
    x, y = _scale(img[tr]), jnp.asarray(lab[tr])
    params = net.init(jax.random.PRNGKey(seed), x[:1])["params"]
    tx = optax.adamw(3e-3, weight_decay=1e-4)

    @jax.jit
    def step(p, o):
        def loss(p):
            logits = net.apply({"params": p}, x)[0]
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        g = jax.grad(loss)(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o

    opt = tx.init(params)
    for _ in range(steps):
        params, opt = step(params, opt)
    pred = np.asarray(net.apply({"params": params}, _scale(img[te]))[0].argmax(-1))
    return params, float((pred == lab[te]).mean())


class DigitsFeatures:
    """64-d penultimate features of the seeded digit classifier, for uint8 (N, 8, 8, 1)."""

    def __init__(self, seed: int = 0):
        self.params, self.accuracy = digits_classifier(seed)
        self._fn = jax.jit(lambda p, x: Classifier().apply({"params": p}, _scale(x))[1])

    def __call__(self, images_uint8) -> np.ndarray:
        x = np.asarray(images_uint8)
        if x.shape[1:] != (8, 8, 1) or x.dtype != np.uint8:
            raise ValueError(f"DigitsFeatures takes uint8 (N, 8, 8, 1) images, got {x.dtype} {x.shape}")
        return np.asarray(self._fn(self.params, x), np.float64)


def quality(real_uint8, fake_uint8, features=None, k: int = 3) -> dict:
    """FD_digits (Frechet distance of the features, float64) and k-NN precision/recall."""
    features = features or DigitsFeatures()
    fr, ff = features(real_uint8), features(fake_uint8)
    a, b = fid.stats_of(fr), fid.stats_of(ff)
    p, r = fid.precision_recall(fr, ff, k=k)
    return {"fd": fid.fid_from_stats(a, b), "precision": p, "recall": r}
