"""Assets fetched on first use (genmod.assets): tiny files served from 127.0.0.1 by the test and
pointed to through ``GENMOD_ASSETS``; every other asset points at a closed local port, so no
test can reach the internet. Fetch + verify + read exactly, a wrong hash, a cut connection, no
server, two processes at once, a killed download's leftovers, and the three users (data
``cifar10``, ``genmod.evaluate``'s Inception weights, ``genmod.convert edm NAME``)."""
import collections
import hashlib
import http.server
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
import pytest

from genmod import assets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "..", "shared", "fixtures", "edm")
EDM = "edm-cifar10-32x32-cond-vp"


class Server:
    """Serves ``files`` {path: bytes} from a thread. ``mode``: ok, cut (half the body, then the
    connection closes) or hold (half, then the rest once ``release`` is set); ``hits``: GETs."""

    def __init__(self):
        self.files, self.mode, self.hits, self.release = {}, "ok", collections.Counter(), threading.Event()
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                srv.hits[self.path] += 1
                body = srv.files.get(self.path)
                if body is None:
                    return self.send_error(404)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                half = len(body) // 2
                self.wfile.write(body if srv.mode == "ok" else body[:half])
                if srv.mode == "hold":
                    self.wfile.flush()
                    srv.release.wait(60)
                    self.wfile.write(body[half:])

            def log_message(self, *_):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, path, body):
        self.files[path] = body
        return self.url + path


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Empty cache in tmp_path; ``mirror(name=entry, ...)`` writes ``GENMOD_ASSETS`` (every
    other asset at a closed local port)."""
    dead = f"http://127.0.0.1:{_closed_port()}/"
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv("GENMOD_FID_WEIGHTS", raising=False)

    def mirror(**entries):
        table = {n: {"url": dead + a.file} for n, a in assets.TABLE.items()}
        table.update({k.replace("_", "-") if k.startswith("edm") else k: v for k, v in entries.items()})
        path = tmp_path / "assets.json"
        path.write_text(json.dumps(table))
        monkeypatch.setenv(assets.TABLE_ENV, str(path))
        return str(path)

    mirror()
    return mirror


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def _cache(tmp_path):
    d = tmp_path / "cache"
    return sorted(os.listdir(d)) if d.exists() else []


def _cifar_archive(n=4):
    """cifar-10-python.tar.gz in the official layout (n images per batch) and its arrays."""
    rng, out, src = np.random.default_rng(0), io.BytesIO(), {}
    with tarfile.open(fileobj=out, mode="w:gz") as tf:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
            x, y = rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, n)]
            src[name] = (x, y)
            blob = pickle.dumps({b"batch_label": name.encode(), b"labels": y, b"data": x}, protocol=4)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return out.getvalue(), src


def _images(src, names):
    return np.concatenate([src[n][0].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) for n in names])


def _one_line(e):
    msg = str(e.value if hasattr(e, "value") else e)
    assert "\n" not in msg.strip(), msg
    return msg


def test_fetch_verify_and_read_exactly(env, server, tmp_path, capsys):
    from genmod import data

    blob, src = _cifar_archive()
    url = server.serve("/ok/cifar-10-python.tar.gz", blob)
    env(cifar10={"url": url, "md5": hashlib.md5(blob).hexdigest()})  # md5 in place of sha256
    train = data.open_source("cifar10")
    np.testing.assert_array_equal(train.get(np.arange(20))["image"], _images(src, data.CIFAR10_SPLITS["train"]))
    np.testing.assert_array_equal(train.get(np.arange(20))["label"],
                                  np.concatenate([src[n][1] for n in data.CIFAR10_SPLITS["train"]]))
    test = data.open_source("cifar10", "test")  # from the cache: no second request
    np.testing.assert_array_equal(test.get(np.arange(4))["image"], _images(src, ["test_batch"]))
    assert server.hits["/ok/cifar-10-python.tar.gz"] == 1
    assert _cache(tmp_path) == ["cifar-10-python.tar.gz"]
    assert (tmp_path / "cache" / "cifar-10-python.tar.gz").read_bytes() == blob
    assert "cifar10: fetching " + url in capsys.readouterr().err
    assert assets.main(["list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert list(rows) == list(assets.TABLE) and f"cached ({len(blob) / 1e6:.1f} MB)" in rows["cifar10"]
    assert "md5 pinned" in rows["cifar10"] and "absent" in rows[EDM] and "sha256 at first download" in rows[EDM]


def test_wrong_hash_is_refused_and_nothing_kept(env, server, tmp_path):
    url = server.serve("/bad/cifar-10-python.tar.gz", b"not the archive")
    env(cifar10={"url": url, "sha256": hashlib.sha256(b"the archive").hexdigest()})
    with pytest.raises(assets.AssetError) as e:
        assets.fetch("cifar10")
    msg = _one_line(e)
    assert msg.startswith(f"cannot fetch cifar10 from {url}: wrong file: its sha256 is ") and "nothing was kept" in msg
    assert str(tmp_path / "cache" / "cifar-10-python.tar.gz") in msg and "cifar10:PATH" in msg
    assert _cache(tmp_path) == []
    env(cifar10={"url": url})  # a URL alone keeps the publisher's md5 (and size)
    with pytest.raises(assets.AssetError, match="got 15 bytes, expected 170,498,071"):
        assets.fetch("cifar10")
    assert _cache(tmp_path) == []


def test_cut_connection_then_retry(env, server, tmp_path):
    body = os.urandom(300_000)
    url = server.serve("/cut/" + EDM + ".pkl", body)
    env(edm_cifar10_32x32_cond_vp={"url": url, "sha256": hashlib.sha256(body).hexdigest()})
    server.mode = "cut"
    try:
        with pytest.raises(assets.AssetError) as e:
            assets.fetch(EDM)
    finally:
        server.mode = "ok"
    assert "connection cut after 150,000 of 300,000 bytes; nothing was kept" in _one_line(e)
    assert _cache(tmp_path) == []
    path = assets.fetch(EDM)
    assert open(path, "rb").read() == body and _cache(tmp_path) == [EDM + ".pkl"]


def test_no_server_one_line_and_exit_code(env, tmp_path, capsys):
    from genmod import launch

    r = subprocess.run([sys.executable, "-m", "genmod.assets", "fetch", "cifar10"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "cannot fetch cifar10 from http://127.0.0.1:" in err[0], r.stderr
    assert "Connection refused" in err[0] and "cifar10:PATH" in err[0] and "nothing was kept" in err[0]
    assert _cache(tmp_path) == []
    wd = tmp_path / "w"
    rc = launch.main(["--config", "cm_cifar10:smoke", "--config.data.source=cifar10", "--workdir", str(wd)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 2 and lines[-1].startswith("error: cannot fetch cifar10"), lines
    assert not wd.exists() and _cache(tmp_path) == []


def test_two_processes_one_download(env, server, tmp_path):
    body = os.urandom(200_000)
    url = server.serve("/hold/" + EDM + ".pkl", body)
    env(edm_cifar10_32x32_cond_vp={"url": url, "sha256": hashlib.sha256(body).hexdigest()})
    cmd = [sys.executable, "-m", "genmod.assets", "fetch", EDM]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    server.mode, procs = "hold", []
    server.release.clear()
    try:
        procs.append(subprocess.Popen(cmd, cwd=REPO, stderr=open(logs[0], "w"), stdout=subprocess.PIPE))
        deadline = time.time() + 60
        while server.hits["/hold/" + EDM + ".pkl"] == 0 and time.time() < deadline:
            time.sleep(0.05)  # the first holds the lock and is mid-download
        procs.append(subprocess.Popen(cmd, cwd=REPO, stderr=open(logs[1], "w"), stdout=subprocess.PIPE))
        while "waiting for it" not in logs[1].read_text() and time.time() < deadline:
            time.sleep(0.05)
    finally:
        server.release.set()
        server.mode = "ok"
        outs = [p.communicate(timeout=60)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [f.read_text() for f in logs]
    assert "waiting for it" in logs[1].read_text() and ": fetching http" not in logs[1].read_text()
    assert outs[0] == outs[1] == f"{EDM}: {tmp_path / 'cache' / (EDM + '.pkl')}\n"
    assert server.hits["/hold/" + EDM + ".pkl"] == 1
    assert _cache(tmp_path) == [EDM + ".pkl"] and (tmp_path / "cache" / (EDM + ".pkl")).read_bytes() == body


def test_killed_download_leftovers_are_taken_over(env, server, tmp_path):
    body = os.urandom(1000)
    env(edm_cifar10_32x32_cond_vp={"url": server.serve("/left/" + EDM + ".pkl", body)})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / (EDM + ".pkl.lock")).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout),
                                                         "start": time.time()}))
    (cache / f"{EDM}.pkl.part.{socket.gethostname()}.{dead.stdout.strip()}").write_bytes(body[:10])
    assert open(assets.fetch(EDM), "rb").read() == body
    assert _cache(tmp_path) == [EDM + ".pkl", EDM + ".pkl.sha256"]


def test_unpublished_hash_recorded_on_first_download(env, server, tmp_path, capsys):
    body, other = os.urandom(1000), os.urandom(1000)
    env(edm_cifar10_32x32_cond_vp={"url": server.serve("/rec/" + EDM + ".pkl", body)})
    path = assets.fetch(EDM)
    sha = hashlib.sha256(body).hexdigest()
    assert f"recorded sha256 {sha}" in capsys.readouterr().err
    assert open(path + ".sha256").read().split() == [sha, EDM + ".pkl"]
    os.remove(path)  # fetched again from a source now serving other bytes: refused
    server.files["/rec/" + EDM + ".pkl"] = other
    with pytest.raises(assets.AssetError, match="expected " + sha + r" \(recorded at the first download"):
        assets.fetch(EDM)
    assert _cache(tmp_path) == [EDM + ".pkl.sha256"]
    with open(path, "wb") as f:  # a damaged cached copy is refused on use
        f.write(other)
    with pytest.raises(assets.AssetError) as e:
        assets.fetch(EDM)
    assert "the cached " + path + " does not match" in _one_line(e) and "delete it to fetch it again" in str(e.value)


def test_inception_name_prefix_is_checked(env, server, tmp_path):
    env(inception_fid={"url": server.serve("/inc/x.pth", b"random weights")})  # the table's hash prefix stays
    with pytest.raises(assets.AssetError, match="does not start with the published 6726825d"):
        assets.fetch("inception_fid")
    assert _cache(tmp_path) == []


@pytest.mark.parametrize("table,msg", [
    ("{not json", "cannot read the JSON"),
    ({"cifar": {"url": "http://x/y"}}, "unknown asset 'cifar' (did you mean 'cifar10'?)"),
    ({"cifar10": {"url": "http://x/y", "sha": "0"}}, "unknown key 'sha'"),
    ({"cifar10": {"sha256": "abc"}}, "cifar10.sha256: expected 64 hex digits"),
    ({"cifar10": {"url": "ftp://x/y"}}, "url must be http://, https:// or file://"),
])
def test_bad_mirror_file_one_line(env, tmp_path, monkeypatch, capsys, table, msg):
    p = tmp_path / "bad.json"
    p.write_text(table if isinstance(table, str) else json.dumps(table))
    monkeypatch.setenv(assets.TABLE_ENV, str(p))
    assert assets.main(["fetch", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err and str(p) in err, err
    assert assets.main(["fetch", "cifar10", "nope"]) == 2 and _cache(tmp_path) == []  # names checked first


def test_file_url_mirror(env, tmp_path):
    src = tmp_path / "mirror" / "teacher.pkl"
    src.parent.mkdir()
    src.write_bytes(b"x" * 100)
    env(edm_cifar10_32x32_cond_vp={"url": src.as_uri(), "sha256": hashlib.sha256(b"x" * 100).hexdigest()})
    assert open(assets.fetch(EDM), "rb").read() == b"x" * 100


def _random_inception_pth(path):
    """A .pth with pytorch-fid's key names and shapes, random values (what convert reads)."""
    torch = pytest.importorskip("torch")
    from genmod.eval.inception import abstract_variables, flatten

    rng, sd = np.random.default_rng(0), {}
    for k, s in flatten(abstract_variables()).items():
        coll, *mod, leaf = k.split("/")
        name = ".".join(mod) + "." + {"kernel": "weight", "scale": "weight", "bias": "bias",
                                      "mean": "running_mean", "var": "running_var"}[leaf]
        v = rng.standard_normal(s.shape, np.float32) * 0.05 + (leaf == "var")
        sd[name] = torch.from_numpy(np.ascontiguousarray(v.transpose(3, 2, 0, 1) if leaf == "kernel" else v))
    torch.save(sd, path)
    return path.read_bytes()


def test_inception_weights_fetched_and_converted_once(env, server, tmp_path, monkeypatch):
    from genmod.eval import inception

    monkeypatch.chdir(tmp_path)  # no checkpoints/fid/inception_fid.npz here
    blob = _random_inception_pth(tmp_path / "w.pth")
    sha = hashlib.sha256(blob).hexdigest()
    env(inception_fid={"url": server.serve("/fid/w.pth", blob), "sha256": sha})
    _, info = inception.load_variables()
    npz = tmp_path / "cache" / "inception_fid.npz"
    assert info["path"] == str(npz) and info["source_sha256"] == sha and len(info["sha256"]) == 64
    mtime = os.path.getmtime(npz)
    assert inception.load_variables()[1]["sha256"] == info["sha256"]  # cached: neither fetched nor converted again
    assert server.hits["/fid/w.pth"] == 1 and os.path.getmtime(npz) == mtime
    assert _cache(tmp_path) == ["inception_fid.npz", "pt_inception-2015-12-05-6726825d.pth"]


@pytest.mark.skipif(not os.path.isdir(FIXTURES), reason="needs ../shared/fixtures/edm")
def test_convert_edm_by_name(env, server, tmp_path, capsys):
    from genmod import convert

    blob = open(os.path.join(FIXTURES, "edm_ddpmpp_cond.pkl"), "rb").read()
    env(edm_cifar10_32x32_cond_vp={"url": server.serve("/edm/" + EDM + ".pkl", blob)})
    wd = tmp_path / "teacher"
    assert convert.main(["edm", EDM, "--workdir", str(wd)]) == 0, capsys.readouterr().err
    rec = json.load(open(wd / "converted_from.json"))
    assert rec["source"] == str(tmp_path / "cache" / (EDM + ".pkl"))
    assert rec["sha256"] == hashlib.sha256(blob).hexdigest()
    assert convert.main(["edm", EDM, "--workdir", str(wd)]) == 2  # refused before anything is fetched again
    assert "not overwriting" in capsys.readouterr().err and server.hits["/edm/" + EDM + ".pkl"] == 1
    assert convert.main(["edm", "edm-nope", "--workdir", str(tmp_path / "t2")]) == 2
    assert "no such file: edm-nope" in capsys.readouterr().err


def test_cpu_notice():
    from genmod import train

    line = train.cpu_notice("main", 60.0, 400_000, "cpu")
    assert line.startswith("[main] note: no accelerator: at 60.00 s/step, 400,000 steps take ~0.8 years")
    assert ":smoke" in line and "cm_digits" in line and line.endswith("carrying on") and "\n" not in line
    assert train.cpu_notice("main", 0.2, 400_000, "cpu") is None  # under a day
    assert train.cpu_notice("main", 60.0, 400_000, "gpu") is None


@pytest.mark.slow
def test_cm_cifar10_smoke_trains_from_the_fetched_archive(env, server, tmp_path, capsys, monkeypatch):
    from genmod import launch, train

    blob, _ = _cifar_archive(n=8)
    env(cifar10={"url": server.serve("/e2e/cifar-10-python.tar.gz", blob), "sha256": hashlib.sha256(blob).hexdigest()})
    monkeypatch.setattr(train, "CPU_DAY_S", 0.0)  # any projection counts as too long
    wd = tmp_path / "w"
    rc = launch.main(["--config", "cm_cifar10:smoke", "--config.data.source=cifar10", "--workdir", str(wd),
                      "--config.sample_every=0"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "data: cifar10 (train): 40 images of 32x32x3" in out.out
    assert "[main] note: no accelerator: at " in out.out and os.path.isdir(wd / "ckpt" / "main" / "4")
    assert server.hits["/e2e/cifar-10-python.tar.gz"] == 1 and _cache(tmp_path) == ["cifar-10-python.tar.gz"]


@pytest.mark.slow
def test_evaluate_ref_fetches_weights_and_data(env, server, tmp_path, monkeypatch, capsys):
    from genmod import evaluate

    monkeypatch.chdir(tmp_path)
    pth = _random_inception_pth(tmp_path / "w.pth")
    blob, _ = _cifar_archive()
    env(inception_fid={"url": server.serve("/ev/w.pth", pth), "sha256": hashlib.sha256(pth).hexdigest()},
        cifar10={"url": server.serve("/ev/c.tar.gz", blob), "md5": hashlib.md5(blob).hexdigest()})
    out = tmp_path / "ref.npz"
    assert evaluate.main(["ref", "--data", "cifar10", "--split", "test", "--out", str(out), "--batch", "4"]) == 0
    ref = evaluate.load_ref(str(out))
    assert ref["count"] == 4 and ref["data"] == "cifar10" and ref["mu"].shape == (2048,)
    assert _cache(tmp_path) == ["cifar-10-python.tar.gz", "inception_fid.npz", "pt_inception-2015-12-05-6726825d.pth"]
