"""FID parity with pytorch-fid (never skipped: CI installs ``torch==2.13.0 pytorch-fid``).

pytorch-fid's ``InceptionV3([3])`` is built with its own code but without the weight
download (random, seeded weights; BatchNorm running statistics calibrated on data and then
perturbed so BN is really exercised), exported with ``torch.save``, converted through
``genmod.eval.convert`` and compared with the JAX network on the same uint8 images.
"""
from __future__ import annotations

import numpy as np
import pytest

from genmod.eval import fid as fidlib
from genmod.eval.torch_reference import (import_pytorch_fid, random_pytorch_fid_model, smooth_images,
                                         torch_features)


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """Torch model -> .pth -> converter -> JAX features of the same images."""
    import torch

    from genmod.eval import convert, inception

    torch.set_num_threads(2)
    _, fid_score = import_pytorch_fid()
    model = random_pytorch_fid_model(seed=0)
    tmp = tmp_path_factory.mktemp("fid")
    pth = tmp / "random_inception.pth"
    sd = model.backbone.state_dict()  # the torchvision key names of pytorch-fid's .pth
    assert any(k.startswith("fc.") for k in sd) and len(sd) > len(model.state_dict())
    torch.save(sd, pth)
    out = tmp / "inception_fid.npz"
    assert convert.main([str(pth), "--out", str(out)]) == 0
    feats = inception.InceptionFeatures(weights=str(out), batch_size=4)

    square = smooth_images(12, 32, 32, seed=1)
    other = smooth_images(4, 40, 24, seed=2)  # non-square, resized per axis
    assert feats._net is not None and feats.mesh.devices.size == jax_device_count()
    plain = inception.InceptionFeatures(weights=str(out), batch_size=4, cpu_tricks=False)  # GPU form
    return dict(torch=(torch_features(model, square), torch_features(model, other)),
                jax=(feats(square).astype(np.float64), feats(other).astype(np.float64)),
                plain=plain(square[:4]).astype(np.float64),
                fid_score=fid_score, weights=str(out), feats=feats)


def jax_device_count():
    import jax

    return jax.local_device_count()


def _rel(a, b):
    """Per-image relative L2 error, worst image."""
    return float(np.max(np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)))


@pytest.mark.slow
@pytest.mark.xdist_group("fid_parity")  # shares a module fixture: one worker computes it once
def test_features_match_pytorch_fid(parity):
    for t, j in zip(parity["torch"], parity["jax"]):
        assert t.shape == j.shape and t.shape[1] == 2048
        assert np.linalg.norm(t, axis=1).min() > 1.0  # features are not degenerate
        err = _rel(j, t)
        print(f"max per-image relative feature error {err:.2e}; "
              f"max abs {np.abs(j - t).max():.2e} of max {np.abs(t).max():.2f}")
        assert err < 1e-4
    err = _rel(parity["plain"], parity["torch"][0][:4])  # the convolution forms used off-CPU
    print(f"cpu_tricks=False: max per-image relative feature error {err:.2e}")
    assert err < 1e-4


@pytest.mark.slow
@pytest.mark.xdist_group("fid_parity")  # shares a module fixture: one worker computes it once
def test_fid_of_inception_features_matches_pytorch_fid(parity):
    fs = parity["fid_score"]
    # the first 512 of the 2048 features: scipy's sqrtm of the rank-5 2048^2 product takes minutes
    # on 2 cores in pytorch-fid's call (the formula at full rank: test_frechet_distance_equals_pytorch_fid)
    t, j = parity["torch"][0][:, :512], parity["jax"][0][:, :512]
    ref = fs.calculate_frechet_distance(t[:6].mean(0), np.cov(t[:6], rowvar=False),
                                        t[6:].mean(0), np.cov(t[6:], rowvar=False))
    ours = fidlib.fid_from_stats(fidlib.stats_of(j[:6]), fidlib.stats_of(j[6:]))
    print(f"FID torch {ref:.6f} jax {ours:.6f} rel {abs(ours - ref) / ref:.2e}")
    assert ref > 0 and abs(ours - ref) / ref < 1e-4


def test_weights_provenance_and_missing_file(parity, tmp_path):
    from genmod.eval import inception

    _, info = inception.load_variables(parity["weights"])
    assert len(info["sha256"]) == 64 and info["sha256"] == parity["feats"].sha256
    assert info["standard"] is False and len(info["source_sha256"]) == 64
    from genmod import sharding

    net = inception.InceptionFeatures(weights=parity["weights"], batch_size=5,
                                      mesh=sharding.make_mesh({"data": 2, "fsdp": 2}))
    assert net.batch_size == 8 and net.sha256 == info["sha256"]  # batch over data x fsdp
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError) as e:
        inception.load_variables(str(missing))
    msg = str(e.value)
    assert "\n" not in msg and str(missing) in msg and "python -m genmod.eval.convert" in msg


# ---------------------------------------------------------------------------------------------
# Fréchet distance and statistics (no network)


def test_frechet_distance_equals_pytorch_fid():
    _, fid_score = import_pytorch_fid()
    rng = np.random.default_rng(0)
    for n, d in [(300, 64), (40, 64)]:  # full rank, and rank-deficient (eps retry / imag path)
        a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3
        b = rng.normal(size=(n, d)) * 1.2 + 0.1
        args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        ref = fid_score.calculate_frechet_distance(*args)
        ours = fidlib.frechet_distance(*args)
        assert abs(ours - ref) <= 1e-6 * abs(ref), (n, ours, ref)


def test_frechet_distance_known_values():
    rng = np.random.default_rng(1)
    d = 16
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    s = rng.normal(size=(d, d))
    s = s @ s.T + np.eye(d)
    assert np.isclose(fidlib.frechet_distance(m1, s, m2, s), np.sum((m1 - m2) ** 2), rtol=1e-8)
    a, b = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    assert np.isclose(fidlib.frechet_distance(m1, np.diag(a), m1, np.diag(b)),
                      np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), rtol=1e-8)


def test_fid_self_zero_and_grows_with_noise():
    rng = np.random.default_rng(2)
    x = rng.gamma(2.0, 0.2, size=(400, 32))
    base = fidlib.stats_of(x)
    assert abs(fidlib.fid_from_stats(base, base)) < 1e-8
    vals = [fidlib.fid_from_stats(fidlib.stats_of(x + s * rng.normal(size=x.shape)), base)
            for s in (0.05, 0.2, 0.5)]
    assert 0 < vals[0] < vals[1] < vals[2]


def test_fid_self_zero_rank_deficient():
    """6 samples in 256 dimensions: a singular covariance (as with few images) still works."""
    x = np.random.default_rng(5).gamma(2.0, 0.2, size=(6, 256))
    st = fidlib.stats_of(x)
    assert abs(fidlib.fid_from_stats(st, st)) < 1e-5 * np.trace(st.sigma)


def test_streaming_stats_uneven_batches_and_merge():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1003, 24)).astype(np.float32) * 3 + 5
    s = fidlib.FeatureStats(24)
    for i in range(0, len(x), 250):  # last batch of 3
        s.update(x[i:i + 250])
    assert s.count == 1003
    np.testing.assert_allclose(s.mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-11)
    merged = fidlib.stats_of(x[:500]) + fidlib.stats_of(x[500:])
    assert merged.count == 1003
    np.testing.assert_allclose(merged.sigma, s.sigma, rtol=1e-12, atol=1e-12)
    assert s.allreduce() is s
    with pytest.raises(ValueError):
        fidlib.FeatureStats(24).update(x[:1]).sigma


def test_to_uint8_rounds():
    from genmod import writers

    assert fidlib.to_uint8 is writers.to_uint8
    x = np.array([-1.5, -1.0, -1 + 0.6 / 127.5, -1 + 0.4 / 127.5, 0.0, 1.0, 2.0], np.float32)
    np.testing.assert_array_equal(fidlib.to_uint8(x), [0, 0, 1, 0, 128, 255, 255])


def test_precision_recall():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(300, 8))
    p, r = fidlib.precision_recall(real, real.copy())
    assert p == 1.0 and r == 1.0
    far = rng.normal(size=(300, 8)) + 20.0
    assert fidlib.precision_recall(real, far) == (0.0, 0.0)
    narrow = rng.normal(size=(300, 8)) * 0.3  # inside the real manifold, covering little of it
    p, r = fidlib.precision_recall(real, narrow)
    assert p > 0.9 and r < 0.5


# ---------------------------------------------------------------------------------------------
# CLI: python -m genmod.evaluate ref / fid (fake data source and sampler, random weights)


def _cli_error(argv):
    from genmod import evaluate

    with pytest.raises(SystemExit) as e:
        evaluate.main(argv)
    msg = str(e.value.code)
    assert msg.startswith("error: ") and "\n" not in msg, msg
    return msg


@pytest.mark.slow
@pytest.mark.xdist_group("fid_parity")  # shares a module fixture: one worker computes it once
def test_evaluate_ref_and_fid_cli(parity, tmp_path, monkeypatch, capsys):
    import json

    from genmod import data, evaluate, train

    w = parity["weights"]
    real = smooth_images(6, 16, 16, seed=5)
    monkeypatch.setattr(data, "open_source", lambda spec, split="train": data.ArraySource(spec, split, image=real))
    ref = str(tmp_path / "ref.npz")
    assert evaluate.main(["ref", "--data", "fake:x", "--out", ref, "--batch", "4", "--weights", w]) == 0
    r = evaluate.load_ref(ref)
    assert r["count"] == 6 and r["data"] == "fake:x" and r["split"] == "train"
    assert list(r["resolution"]) == [16, 16, 3] and r["weights_sha256"] == parity["feats"].sha256
    direct = fidlib.stats_of(parity["feats"](real))
    np.testing.assert_allclose(r["mu"], direct.mu, rtol=1e-10)
    np.testing.assert_allclose(r["sigma"], direct.sigma, rtol=1e-8, atol=1e-10)
    _cli_error(["ref", "--data", "fake:x", "--out", ref, "--num", "7", "--weights", w])

    calls = []

    def fake_iter(workdir, seeds, batch_size, step=None, nfe=None, size=16):
        calls.append((workdir, list(seeds), batch_size, step, nfe))
        for i in range(0, len(seeds), batch_size):
            chunk = np.asarray(seeds[i:i + batch_size])
            yield chunk, np.stack([smooth_images(1, size, size, seed=int(s))[0] for s in chunk])

    monkeypatch.setattr(train, "iter_samples", fake_iter)
    seen = []  # the Fréchet distance itself is tested above; here only what reaches it (and
    # a 2048x2048 sqrtm per run would cost ~10 s of CI time)
    monkeypatch.setattr(fidlib, "frechet_distance", lambda *a: seen.append(a) or float(np.sum((a[0] - a[2]) ** 2)))
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "config.json").write_text("{}")
    args = ["fid", "--workdir", str(wd), "--ref", ref, "--num", "5", "--seeds", "10-19",
            "--batch", "4", "--step", "7", "--nfe", "2", "--weights", w]
    assert evaluate.main(args) == 0
    assert calls[-1] == (str(wd), list(range(10, 15)), 4, 7, 2)
    out = wd / "eval" / "fid5_step7.json"
    res = json.loads(out.read_text())
    fake = fidlib.stats_of(parity["feats"](np.stack([smooth_images(1, 16, 16, seed=s)[0] for s in range(10, 15)])))
    mu1, sigma1, mu2, sigma2 = seen[-1]
    np.testing.assert_allclose(mu1, fake.mu, rtol=1e-10)
    np.testing.assert_allclose(sigma1, fake.sigma, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(mu2, r["mu"])
    np.testing.assert_array_equal(sigma2, r["sigma"])
    assert res["metric"] == "fid5" and res["num"] == 5 and res["step"] == 7 and res["value"] > 0
    assert res["weights_sha256"] == parity["feats"].sha256 and res["resolution"] == [16, 16, 3]
    assert evaluate.main(args) == 0  # same result again: kept, no new file
    assert sorted(p.name for p in (wd / "eval").iterdir()) == ["fid5_step7.json"]
    res["value"] += 1.0  # a different earlier result is never overwritten
    out.write_text(json.dumps(res))
    assert evaluate.main(args) == 0
    assert sorted(p.name for p in (wd / "eval").iterdir()) == ["fid5_step7.json", "fid5_step7_1.json"]
    assert json.loads(out.read_text())["value"] == res["value"]
    assert evaluate.metric_name(50000) == "fid50k" and evaluate.metric_name(2000) == "fid2k"

    # refusals: one line each, non-zero exit
    assert "at least 2" in _cli_error(args[:5] + ["--num", "1", "--weights", w])
    assert "exceeds" in _cli_error(args[:5] + ["--num", "11", "--seeds", "10-19", "--weights", w])
    monkeypatch.setattr(train, "iter_samples", lambda *a, **k: fake_iter(*a, **k, size=8))
    assert "resolution" in _cli_error(args)
    bad = dict(np.load(ref))
    bad["weights_sha256"] = np.asarray("0" * 64)
    np.savez(tmp_path / "bad.npz", **bad)
    assert "weights" in _cli_error(args[:3] + ["--ref", str(tmp_path / "bad.npz")] + args[5:])
    msg = _cli_error(args[:-1] + [str(tmp_path / "missing.npz")])
    assert "missing.npz" in msg and "python -m genmod.eval.convert" in msg
