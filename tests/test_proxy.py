"""FD_digits, the offline image metric of the results table, ranks what it should."""
import numpy as np

from genmod.data import open_source
from genmod.eval import proxy


def test_fd_digits_orders_real_noisy_and_mode_collapsed():
    f = proxy.DigitsFeatures()
    assert f.accuracy > 0.95  # the feature space knows digits (held-out accuracy)
    src = open_source("digits").arrays
    img, lab = src["image"], src["label"]
    p = np.random.default_rng(0).permutation(len(img))
    a, b = img[p[:900]], img[p[900:]]
    real = proxy.quality(a, b, f)
    noisy = proxy.quality(a, np.clip(b + np.random.default_rng(1).normal(0, 40, b.shape), 0, 255).astype(np.uint8), f)
    one = proxy.quality(a, b[lab[p[900:]] == 3], f)
    assert real["fd"] < 5 and real["precision"] > 0.85 and real["recall"] > 0.85
    assert noisy["fd"] > 3 * real["fd"] and noisy["precision"] < real["precision"] - 0.1
    assert one["fd"] > 50 * real["fd"] and one["recall"] < 0.2 and one["precision"] > 0.85


def test_minibatch_classifier_on_an_npz_source(tmp_path):
    """The MNIST path (npz source, seeded minibatches) learns a feature space too: here on the
    digits written as an npz, it must classify held-out digits and rank real above noisy."""
    src = open_source("digits").arrays
    np.savez(tmp_path / "d.npz", x_train=src["image"][..., 0], y_train=src["label"])
    f = proxy.Features(f"npz:{tmp_path / 'd.npz'}", steps=300, holdout=297, batch=128)
    assert f.accuracy > 0.9 and f.shape == (8, 8, 1)
    a, b = src["image"][:900], src["image"][900:]
    noisy = np.clip(b + np.random.default_rng(1).normal(0, 40, b.shape), 0, 255).astype(np.uint8)
    assert proxy.quality(a, noisy, f)["fd"] > 2 * proxy.quality(a, b, f)["fd"]  # measured 11.6 vs 4.6
