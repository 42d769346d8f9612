"""Data sources and the step-indexed pipeline: exact coverage, sharded assembly, errors."""
import gzip
import io
import json
import os
import pickle
import struct
import tarfile

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from genmod import data, launch, sharding


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


class _Py2Pickler(pickle._Pickler):
    """Writes what Python 2 wrote for the official CIFAR-10 batches (protocol 2): str and bytes
    as STRING opcodes (bytes again under ``encoding='bytes'``), numpy.core.multiarray globals."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_str(self, obj):
        b = obj.encode("latin1") if isinstance(obj, str) else obj
        op = pickle.SHORT_BINSTRING + bytes([len(b)]) if len(b) < 256 else pickle.BINSTRING + struct.pack("<i", len(b))
        self.write(op + b)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = _save_str

    def save_global(self, obj, name=None):
        name = name or obj.__name__
        module = pickle.whichmodule(obj, name).replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def _py2_pickle(obj):
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue()


def _add(tf, name, blob):
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    tf.addfile(info, io.BytesIO(blob))


def _cifar_tarball(path, n=6, replace=None, skip=()):
    """cifar-10-python.tar.gz in the official layout, n random images per batch; returns the
    source arrays {batch: (data (n, 3072) uint8, labels list)}."""
    rng, src = np.random.default_rng(0), {}
    with tarfile.open(path, "w:gz") as tf:
        d = tarfile.TarInfo("cifar-10-batches-py")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(d)
        classes = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
        _add(tf, "cifar-10-batches-py/batches.meta",
             _py2_pickle({b"num_cases_per_batch": n, b"label_names": classes, b"num_vis": 3072}))
        for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
            x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            y = [int(v) for v in rng.integers(0, 10, n)]
            src[name] = (x, y)
            what = f"training batch {i + 1} of 5" if i < 5 else "testing batch 1 of 1"
            blob = _py2_pickle({b"batch_label": what.encode(), b"labels": y, b"data": x,
                                b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n)]})
            if name not in skip:
                _add(tf, f"cifar-10-batches-py/{name}", (replace or {}).get(name, blob))
        _add(tf, "cifar-10-batches-py/readme.html", b"<html></html>")
    return src


def test_cifar10_official_archive(tmp_path):
    tar = tmp_path / "cifar-10-python.tar.gz"
    src = _cifar_tarball(tar)
    assert _py2_pickle({b"a": 1}).startswith(b"\x80\x02}q\x00U\x01a")  # Python 2's opcodes
    for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        s = data.open_source(f"cifar10:{tar}", split)
        x = np.concatenate([src[n][0] for n in names])
        y = np.concatenate([src[n][1] for n in names])
        b = s.get(np.arange(len(s)))
        assert len(s) == len(x) and b["image"].shape == (len(x), 32, 32, 3) and b["image"].dtype == np.uint8
        np.testing.assert_array_equal(b["image"], x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        assert b["image"][3, 5, 7, 2] == x[3, 2 * 1024 + 5 * 32 + 7]  # rows are R, G, B planes: NHWC here
        assert b["label"].dtype == np.int32
        np.testing.assert_array_equal(b["label"], y)
    # the extracted folder (or its parent) reads the same
    with tarfile.open(tar) as tf:
        tf.extractall(tmp_path / "ex", filter="data")
    for d in (tmp_path / "ex", tmp_path / "ex" / "cifar-10-batches-py"):
        np.testing.assert_array_equal(data.open_source(f"cifar10:{d}", "test").get(np.arange(6))["image"],
                                      s.get(np.arange(6))["image"])
    # through the pipeline: images in [-1, 1], int labels (class ids, not one-hot)
    p = data.Pipeline(cfg(source=f"cifar10:{tar}", shape=(32, 32, 3), num_classes=10), 4)
    hb, idx = p.host_batch(1, np.arange(4)), p.indices(1)
    train = data.open_source(f"cifar10:{tar}").get(idx)
    np.testing.assert_array_equal(hb["x"], train["image"].astype(np.float32) / 127.5 - 1)
    np.testing.assert_array_equal(hb["label"], train["label"])
    assert hb["label"].dtype == np.int32 and hb["label"].shape == (4,)


class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


@pytest.mark.parametrize("fn", [os.system, eval])
@pytest.mark.parametrize("py2", [False, True])
def test_cifar10_refuses_code_in_pickles(tmp_path, fn, py2):
    marker = tmp_path / "pwned"
    arg = f"touch {marker}" if fn is os.system else f"open({str(marker)!r}, 'w')"
    obj = {b"data": _Evil(fn, arg), b"labels": [0]}
    evil = _py2_pickle(obj) if py2 else pickle.dumps(obj, protocol=4)
    assert b"system" in evil or b"eval" in evil
    _cifar_tarball(tmp_path / "c.tar.gz", replace={"data_batch_3": evil})
    refused = r"data_batch_3: refused pickle global (posix\.system|builtins\.eval)"
    with pytest.raises(data.DataError, match=refused) as e:
        data.open_source(f"cifar10:{tmp_path / 'c.tar.gz'}")
    assert "\n" not in str(e.value) and not marker.exists()


@pytest.mark.parametrize("case,msg", [
    ("missing", "dataset file not found"),
    ("no_test", "no test_batch (expected the official cifar-10-python.tar.gz layout"),
    ("not_tar", "cannot read tar archive"),
    ("garbage", "data_batch_1: not a batch pickle"),
    ("not_dict", "data_batch_1: expected a dict with b'data'"),
    ("split", "cifar10 has splits train | test"),
    ("empty", "cifar10 needs a path"),
])
def test_cifar10_bad_input(tmp_path, case, msg):
    tar, split = tmp_path / "c.tar.gz", "test" if case == "no_test" else "train"
    if case == "no_test":
        _cifar_tarball(tar, skip=("test_batch",))
    elif case == "not_tar":
        tar.write_bytes(b"not a tarball")
    elif case in ("garbage", "not_dict"):
        bad = b"\x80\x02garbage" if case == "garbage" else _py2_pickle([1, 2])
        _cifar_tarball(tar, replace={"data_batch_1": bad})
    spec = {"missing": f"cifar10:{tmp_path / 'nope.tar.gz'}", "empty": "cifar10:"}.get(case, f"cifar10:{tar}")
    with pytest.raises(data.DataError, match=msg.replace("(", r"\(").replace("|", r"\|")) as e:
        data.open_source(spec, "val" if case == "split" else split)
    assert "\n" not in str(e.value)


def _imagenet64_dir(root, n=3):
    """The three official zips extracted under root: data (n, 12288) uint8 CHW rows, 1-based labels."""
    rng, src = np.random.default_rng(1), {}
    for i in range(1, 12):
        name = f"train_data_batch_{i}" if i <= 10 else "val_data"
        sub = "Imagenet64_val_npz" if i > 10 else f"Imagenet64_train_part{1 if i <= 5 else 2}_npz"
        os.makedirs(root / sub, exist_ok=True)
        x, y = rng.integers(0, 256, (n, 12288), dtype=np.uint8), [int(v) for v in rng.integers(1, 1001, n)]
        extra = {"mean": rng.random(12288)} if i <= 10 else {}
        np.savez(root / sub / f"{name}.npz", data=x, labels=y, **extra)
        src[name] = (x, np.asarray(y))
    return src


def test_imagenet64_npz_batches(tmp_path):
    src = _imagenet64_dir(tmp_path / "in64")
    for split, names in (("train", [f"train_data_batch_{i}" for i in range(1, 11)]), ("val", ["val_data"])):
        s = data.open_source(f"imagenet64:{tmp_path / 'in64'}", split)
        x = np.concatenate([src[n][0] for n in names])  # batches in numeric order: ..., 9, 10
        b = s.get(np.arange(len(s)))
        assert b["image"].shape == (len(x), 64, 64, 3) and b["image"].dtype == np.uint8
        np.testing.assert_array_equal(b["image"], x.reshape(-1, 3, 64, 64).transpose(0, 2, 3, 1))
        assert b["image"][-1, 9, 4, 1] == x[-1, 4096 + 9 * 64 + 4]
        np.testing.assert_array_equal(b["label"], np.concatenate([src[n][1] for n in names]) - 1)  # 0-based
        assert b["label"].dtype == np.int32
    p = data.Pipeline(cfg(source=f"imagenet64:{tmp_path / 'in64'}", split="validation", shape=(64, 64, 3),
                          num_classes=1000), 3)
    assert p.host_batch(0, np.arange(3))["x"].shape == (3, 64, 64, 3)
    os.remove(tmp_path / "in64" / "Imagenet64_train_part2_npz" / "train_data_batch_7.npz")
    with pytest.raises(data.DataError, match=r"no train_data_batch_7.npz \(expected the Imagenet64_\*_npz"):
        data.open_source(f"imagenet64:{tmp_path / 'in64'}")
    np.savez(tmp_path / "in64" / "Imagenet64_val_npz" / "val_data.npz", data=src["val_data"][0], labels=[0, 1, 2])
    with pytest.raises(data.DataError, match="labels outside 1..1000"):
        data.open_source(f"imagenet64:{tmp_path / 'in64'}", "val")
    np.savez(tmp_path / "in64" / "Imagenet64_val_npz" / "val_data.npz", data=np.zeros((3, 100), np.uint8),
             labels=[1, 2, 3])
    with pytest.raises(data.DataError, match=r"expected data uint8 \(N, 3\*S\*S\)"):
        data.open_source(f"imagenet64:{tmp_path / 'in64'}", "val")
    with pytest.raises(data.DataError, match="dataset directory not found"):
        data.open_source(f"imagenet64:{tmp_path / 'nope'}")


def test_cm_cifar10_smoke_trains_from_official_archive(tmp_path, capsys):
    tar = tmp_path / "cifar-10-python.tar.gz"
    _cifar_tarball(tar, n=8)
    wd = tmp_path / "w"
    rc = launch.main(["--config", "cm_cifar10:smoke", "--workdir", str(wd), f"--config.data.source=cifar10:{tar}",
                      "--config.sample_every=0"])
    assert rc == 0, capsys.readouterr().err
    assert os.path.isdir(wd / "ckpt" / "main" / "4")
    assert json.load(open(wd / "config.json"))["data"]["source"] == f"cifar10:{tar}"
