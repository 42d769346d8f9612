"""Offline image quality for small benchmarks: Frechet distance and precision/recall in the
features of a seeded digit classifier trained on the spot (no download, no Inception).

Inception features mean little on 8x8 digits and its weights are a download; a classifier
trained on the same 1,797 scikit-learn digits gives a feature space that knows what a digit
looks like, in seconds, identically on every machine (seeded, full-batch, float32 CPU). The
numbers are comparable with each other, never with published FIDs: call it FD_digits.
MNIST gets the same treatment (a classifier on its 60,000 training images, seeded
minibatches): FD_mnist.
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


@functools.lru_cache(maxsize=4)
def classifier(source: str = "digits", seed: int = 0, steps: int = 600, holdout: int = 297, batch: int = 0):
    """(params, held-out accuracy, image shape): trained on ``source``'s train split less a seeded
    ``holdout``, full batch (``batch`` 0) or on seeded minibatches (for MNIST's 60,000)."""
    from genmod.data import open_source

    src = open_source(source)
    img, lab = src.arrays["image"], src.arrays["label"]
    perm = np.random.default_rng(seed).permutation(len(img))
    tr, te = perm[:-holdout], perm[-holdout:]
    net = Classifier()
    x, y = _scale(img[tr]), jnp.asarray(lab[tr])
    params = net.init(jax.random.PRNGKey(seed), x[:1])["params"]
    tx = optax.adamw(3e-3, weight_decay=1e-4)

    @jax.jit
    def step(p, o, i):
        def loss(p):
            xb, yb = (x, y) if not batch else (x[i], y[i])
            logits = net.apply({"params": p}, xb)[0]
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        g = jax.grad(loss)(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o

    opt, rng = tx.init(params), np.random.default_rng(seed)
    for _ in range(steps):
        params, opt = step(params, opt, rng.integers(0, len(tr), batch or 1))
    pred = np.asarray(net.apply({"params": params}, _scale(img[te]))[0].argmax(-1))
    return params, float((pred == lab[te]).mean()), img.shape[1:]


class Features:
    """64-d penultimate features of ``source``'s seeded classifier, for uint8 NHWC images of
    that source's shape. ``train``: ``classifier``'s keyword arguments."""

    def __init__(self, source: str = "digits", seed: int = 0, **train):
        self.params, self.accuracy, self.shape = classifier(source, seed, **train)
        self._fn = jax.jit(lambda p, x: Classifier().apply({"params": p}, _scale(x))[1])

    def __call__(self, images_uint8) -> np.ndarray:
        x = np.asarray(images_uint8)
        if x.shape[1:] != self.shape or x.dtype != np.uint8:
            raise ValueError(f"features take uint8 (N, {', '.join(map(str, self.shape))}) images, got {x.dtype} {x.shape}")
        return np.concatenate([np.asarray(self._fn(self.params, x[i:i + 1000]), np.float64)
                               for i in range(0, len(x), 1000)])


def DigitsFeatures(seed: int = 0) -> Features:
    """The scikit-learn digits' classifier (full batch, 600 steps): FD_digits."""
    return Features("digits", seed)


def MnistFeatures(path: str, seed: int = 0) -> Features:
    """An MNIST classifier (train split less 5,000, 1,500 minibatches of 256): FD_mnist."""
    return Features(f"npz:{path}", seed, steps=1500, holdout=5000, batch=256)


def quality(real_uint8, fake_uint8, features=None, k: int = 3) -> dict:
    """FD_digits (Frechet distance of the features, float64) and k-NN precision/recall."""
    features = features or DigitsFeatures()
    fr, ff = features(real_uint8), features(fake_uint8)
    a, b = fid.stats_of(fr), fid.stats_of(ff)
    p, r = fid.precision_recall(fr, ff, k=k)
    return {"fd": fid.fid_from_stats(a, b), "precision": p, "recall": r}
