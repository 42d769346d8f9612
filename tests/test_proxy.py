"""FD_digits, the offline image metric of the results table, ranks what it should."""
import numpy as np
import pytest

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


@pytest.mark.slow  # trains a run end to end; the FD itself is tested above in the fast set
def test_fd_cli_reproduces_the_results_benchmark(tmp_path, capsys):
    """``python -m genmod.evaluate fd`` gives exactly the numbers benchmarks/results.py puts in
    docs/RESULTS.md (same library code: genmod.eval.proxy), here on an untrained quickstart:smoke
    network written as a finished run (no training: the numbers, not the quality, are checked)."""
    import json
    import os
    import sys

    import jax

    from genmod import config_lib, edm_pickle, evaluate
    from genmod.method import get_method

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import results

    wd = tmp_path / "runs" / "qs"
    c = config_lib.load("quickstart:smoke")
    init = jax.jit(get_method(c).init)
    params = init(jax.random.PRNGKey(1), {"x": np.zeros((1, 8, 8, 1), np.float32)}).params["net"]
    edm_pickle.write_workdir(str(wd), c, params, {})
    assert evaluate.main(["fd", "--workdir", str(wd), "--nfe", "4"]) == 0
    out = capsys.readouterr().out
    rec = json.load(open(wd / "eval" / "fd_digits_step0_nfe3.json"))
    assert out.startswith(f"FD_digits = {rec['value']:.4f}  precision") and "NFE 3, 898 samples vs 899 real" in out
    features = results.Features()
    run = results.Run("qs", "quickstart:smoke", (4,), "EDM", group="digits")
    (row,), _ = results.evaluate(run, str(tmp_path / "runs"), 2048, features)
    assert (rec["value"], rec["precision"], rec["recall"]) == (row["fd"], row["precision"], row["recall"])
    assert rec["floor"] == results.floors(["digits"], 2048, features)["digits"]
    assert rec["floor"]["fd"] == pytest.approx(2.33516, abs=1e-5)  # docs/RESULTS.md's digits floor
    assert (rec["num"], rec["ref_count"], rec["step"], rec["nfe_used"]) == (898, 899, 0, 3)
    # a feature set that does not fit the workdir's images is one line, before any sampling
    with pytest.raises(SystemExit, match="no MNIST npz at .*mnist.npz|scores 28x28x1 images"):
        evaluate.main(["fd", "--workdir", str(wd), "--features", "mnist"])
