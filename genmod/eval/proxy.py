"""Offline image quality for small benchmarks: Frechet distance and precision/recall in the
features of a seeded digit classifier trained on the spot (no download, no Inception).

Inception features mean little on 8x8 digits and its weights are a download; a classifier
trained on the same 1,797 scikit-learn digits gives a feature space that knows what a digit
looks like, in seconds, identically on every machine (seeded, full-batch, float32 CPU). The
numbers are comparable with each other, never with published FIDs: call it FD_digits.
MNIST gets the same treatment (a classifier on its 60,000 training images, seeded
minibatches): FD_mnist.

The benchmark protocol (``benchmarks/results.py``, docs/RESULTS.md) lives here too, so that
``python -m genmod.evaluate fd`` reproduces the published numbers: ``benchmark(spec)`` gives
the feature space, the reference set and the real-data floor set of ``digits``, ``mnist`` or
an MNIST-like ``PATH.npz``; ``workdir_quality`` samples a workdir for as many seeds as the
floor set holds (FD is biased by the count) and scores them.
"""
from __future__ import annotations

import functools
import os
from typing import NamedTuple

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


# -- the benchmark protocol (benchmarks/results.py, docs/RESULTS.md) ---------------------------
# MNIST as npz (x_train, y_train, x_test, y_test) next to the checkout: the :mnist presets' path
DEFAULT_MNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "shared", "data", "mnist.npz")


def digit_halves():
    """The 1,797 digits split in two seeded halves: A (899) is the reference, B (898) the
    real-data floor."""
    from genmod.data import open_source

    img = open_source("digits").arrays["image"]
    perm = np.random.default_rng(0).permutation(len(img))
    return img[perm[:899]], img[perm[899:]]


def npz_tests(path: str, n: int = 1000):
    """Two seeded, disjoint sets of ``n`` test images of an npz source (MNIST: 1,000 each; a
    smaller test split gives two halves): the reference and the real-data floor."""
    from genmod.data import open_source

    img = open_source(f"npz:{path}", "test").arrays["image"]
    n = min(n, len(img) // 2)
    perm = np.random.default_rng(0).permutation(len(img))
    return img[perm[:n]], img[perm[n:2 * n]]


mnist_tests = npz_tests


class Benchmark(NamedTuple):
    name: str            # the metric: FD_digits, FD_mnist, FD_<file>
    features: Features
    reference: np.ndarray
    floor_set: np.ndarray  # real images scoring the floor; samples are drawn for as many seeds


def benchmark_name(spec: str) -> str:
    if spec in ("digits", "mnist"):
        return f"FD_{spec}"
    return "FD_" + os.path.splitext(os.path.basename(spec))[0]


def benchmark(spec: str = "digits", features: Features | None = None) -> Benchmark:
    """``digits`` (FD_digits: 898 samples vs 899 digits), ``mnist`` (FD_mnist on
    ``DEFAULT_MNIST``: 1,000 samples vs 1,000 test images) or ``PATH.npz`` (an MNIST-like npz:
    x_train/y_train train its classifier with the MNIST recipe, x_test/y_test are the sets).
    ``features``: an already trained feature space to reuse."""
    ref, floor_set = reference_sets(spec)
    if features is None:
        features = DigitsFeatures() if spec == "digits" else MnistFeatures(_npz_path(spec))
    return Benchmark(benchmark_name(spec), features, ref, floor_set)


def _npz_path(spec: str) -> str:
    path = DEFAULT_MNIST if spec == "mnist" else spec
    if not os.path.exists(path):
        raise FileNotFoundError(f"no MNIST npz at {path} (x_train, y_train, x_test, y_test); use --features PATH.npz"
                                if spec == "mnist" else f"features file not found: {path}")
    return path


def reference_sets(spec: str = "digits"):
    """(reference images, floor images) of ``benchmark(spec)``, without its classifier."""
    return digit_halves() if spec == "digits" else npz_tests(_npz_path(spec))


def workdir_quality(workdir: str, bench: Benchmark, nfe: int | None = None, step: int | None = None,
                    seeds=None) -> dict:
    """Quality of a workdir's EMA samples (seeds 0.. as many as ``bench.floor_set``, drawn in
    one batch as benchmarks/results.py does): ``fd``, ``precision``, ``recall``, the checkpoint
    ``step``, the sample count ``num`` and ``nfe_used`` (``Method.nfe_used``). What
    ``python -m genmod.evaluate fd`` reports."""
    from genmod import writers
    from genmod.train import Sampler

    seeds = np.arange(len(bench.floor_set)) if seeds is None else np.asarray(seeds)
    s = Sampler(workdir, step, nfe)
    x = s(seeds)
    if x.ndim != 4:
        raise ValueError(f"{workdir} samples {x.shape[1:]}, not images")
    return {**quality(bench.reference, writers.to_uint8(x), bench.features), "step": s.step, "num": len(seeds),
            "nfe_used": s.nfe_used()[0]}


def floor(bench: Benchmark) -> dict:
    """What real data scores against the reference: the best any model can do at this count."""
    return quality(bench.reference, bench.floor_set, bench.features)
