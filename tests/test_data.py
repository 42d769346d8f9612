"""Data sources and the step-indexed pipeline: exact coverage, sharded assembly, errors."""
import gzip
import struct

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from genmod import data, sharding


def cfg(**kw):
    d = dict(source="digits", split="train", shape=(8, 8, 1), resize="none", flip=False, num_classes=0, size=1000)
    d.update(kw)
    return ml_collections.ConfigDict(d)


def test_stream_covers_each_example_once_per_epoch():
    p = data.Pipeline(cfg(source="gmm:ring", shape=(2,), size=96), batch_size=32, seed=3)
    first = np.concatenate([p.indices(s) for s in range(3)])
    second = np.concatenate([p.indices(s) for s in range(3, 6)])
    assert sorted(first) == list(range(96)) and sorted(second) == list(range(96))
    assert not np.array_equal(first, second)  # reshuffled each epoch
    np.testing.assert_array_equal(p.indices(4), data.Pipeline(p.cfg, 32, seed=3).indices(4))  # stateless
    # batches straddling an epoch boundary stay exact
    q = data.Pipeline(cfg(source="gmm:ring", shape=(2,), size=50), batch_size=32, seed=0)
    np.testing.assert_array_equal(np.sort(np.concatenate([q.indices(0), q.indices(1)[:18]])), np.arange(50))
    # a later stage restarts at step 0 after the stream reached epoch 3 (the permutation cache
    # once evicted the epoch it had just computed)
    for s in (0, 3, 6, 9, 0, 4):
        np.testing.assert_array_equal(p.indices(s), data.Pipeline(p.cfg, 32, seed=3).indices(s))


def test_sharded_batch_equals_host_batch():
    mesh = sharding.make_mesh({"data": -1})
    assert mesh.size == 4
    p = data.Pipeline(cfg(num_classes=10, flip=True), batch_size=16, sharding=sharding.batch_sharding(mesh), seed=1)
    b = p.batch(5)
    ref = p.host_batch(5, np.arange(16))
    np.testing.assert_array_equal(np.asarray(b["x"]), ref["x"])
    np.testing.assert_array_equal(np.asarray(b["label"]), ref["label"])
    assert b["x"].sharding.spec == sharding.batch_sharding(mesh).spec
    assert ref["x"].min() >= -1 and ref["x"].max() <= 1 and ref["x"].shape == (16, 8, 8, 1)


def test_digits_labels_and_values():
    src = data.open_source("digits")
    assert len(src) == 1797
    b = src.get(np.arange(10))
    assert b["image"].dtype == np.uint8 and b["image"].max() == 255 and b["label"].shape == (10,)


def _write_idx(path, arr):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes())


def test_npz_and_idx_sources(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    lab = np.arange(20, dtype=np.uint8) % 10
    np.savez(tmp_path / "m.npz", x_train=img, y_train=lab)
    s = data.open_source(f"npz:{tmp_path / 'm.npz'}")
    np.testing.assert_array_equal(s.get(np.array([3]))["image"][0, ..., 0], img[3])
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", img)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", lab)
    s = data.open_source(f"idx:{tmp_path}")
    np.testing.assert_array_equal(s.get(np.array([7]))["image"][0, ..., 0], img[7])
    assert s.get(np.array([7]))["label"][0] == 7
    # pad 28 -> 32 keeps the digit centred
    p = data.Pipeline(cfg(source=f"idx:{tmp_path}", shape=(32, 32, 1), resize="pad"), 4)
    x = p.host_batch(0, np.arange(4))["x"]
    assert x.shape == (4, 32, 32, 1) and np.all(x[:, :2] == -1)


def test_tfds_source_with_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        p = data.Pipeline(cfg(source="tfds:mnist", shape=(28, 28, 1), num_classes=10), 4)
        b = p.host_batch(2, np.arange(4))
    assert b["x"].shape == (4, 28, 28, 1) and b["label"].dtype == np.int32
    assert len(p.src) == 12


@pytest.mark.parametrize("kw,msg", [
    (dict(source="npz:/nonexistent/x.npz"), "not found"),
    (dict(source="digits", shape=(32, 32, 1)), "does not match"),
    (dict(source="digits", shape=(8, 8, 3)), "channels"),
    (dict(source="nope"), "unknown data source"),
    (dict(source="gmm:ring", shape=(3,)), "points have shape"),
    (dict(source="digits", num_classes=10, shape=(8, 8, 1), split="train"), None),
])
def test_clear_errors(kw, msg):
    if msg is None:
        assert data.Pipeline(cfg(**kw), 4).num_classes == 10
        return
    with pytest.raises(data.DataError, match=msg):
        data.Pipeline(cfg(**kw), 4)


def test_corrupt_files(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="cannot read"):
        data.open_source(f"npz:{tmp_path / 'bad.npz'}")
    img = np.zeros((10, 28, 28), np.uint8)
    _write_idx(tmp_path / "t.gz", img)
    raw = gzip.decompress((tmp_path / "t.gz").read_bytes())[:-100]
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    with pytest.raises(data.DataError, match="truncated"):
        data.open_source(f"idx:{tmp_path}")
