"""Published files a run needs (a dataset, metric weights, teacher networks), fetched on first
use into a cache, hash-checked, and redirectable to a mirror or a pre-filled cache:

    python -m genmod.assets list                  # every asset and its cache state
    python -m genmod.assets fetch NAME [NAME ...] # pre-fill a cache (to copy to offline nodes)

The cache is ``$GENMOD_CACHE`` (default ``~/.cache/genmod``): each asset under its publisher's
file name. ``GENMOD_ASSETS=PATH.json`` overrides table entries, e.g.
``{"cifar10": {"url": "https://mirror/cifar-10-python.tar.gz", "sha256": "..."}}`` (``md5`` in
place of ``sha256``; a URL alone keeps the table's hash). A download streams to a temporary
file renamed into place only once its hash matches, so a wrong file, a cut connection or no
network leaves nothing that could later be read as complete. Where the publisher gives no
hash, the sha256 of the first download is recorded beside the file (``FILE.sha256``), printed,
and checked from then on. One process per cache downloads (a lock file beside it: on a
multi-host run with per-host caches, one per host); the others wait for the renamed file.
This module only moves and hashes bytes: nothing fetched is ever run or unpickled here.
"""
from __future__ import annotations

import dataclasses
import difflib
import glob
import hashlib
import http.client
import json
import os
import posixpath
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CACHE_ENV, TABLE_ENV = "GENMOD_CACHE", "GENMOD_ASSETS"
TIMEOUT_S = 60.0  # per socket operation: a stalled server fails instead of hanging the run


class AssetError(RuntimeError):
    """An asset cannot be fetched or does not match its hash (one clear line)."""


@dataclasses.dataclass(frozen=True)
class Asset:
    name: str
    url: str
    what: str
    manual: str = ""  # the route besides placing the file in the cache yourself
    sha256: str | None = None
    md5: str | None = None
    sha256_prefix: str = ""  # torch-hub style: the publisher's file name carries the hash's start
    size: int | None = None
    file: str = ""  # the name in the cache: the publisher's, whatever URL a mirror uses
    hash_from: str = "publisher"

    def __post_init__(self):
        if not self.file:
            object.__setattr__(self, "file", posixpath.basename(urllib.parse.urlparse(self.url).path))


EDM_URL = "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/"
EDM_NETS = ("edm-cifar10-32x32-cond-vp", "edm-cifar10-32x32-uncond-vp", "edm-cifar10-32x32-cond-ve",
            "edm-cifar10-32x32-uncond-ve", "edm-ffhq-64x64-uncond-vp", "edm-ffhq-64x64-uncond-ve",
            "edm-afhqv2-64x64-uncond-vp", "edm-afhqv2-64x64-uncond-ve", "edm-imagenet-64x64-cond-adm")
LPIPS_MANUAL = ", or convert both yourself (python -m genmod.lpips) and set cm.lpips_weights"
TABLE = {a.name: a for a in [
    Asset("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
          "CIFAR-10 (data spec cifar10: the *_cifar10 configs)", ", or use --config.data.source=cifar10:PATH",
          md5="c58f30108f718f92721af3b95e74349a", size=170498071),
    Asset("inception_fid", "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
          "pt_inception-2015-12-05-6726825d.pth", "pytorch-fid's FID Inception-v3 (genmod.evaluate without --weights)",
          ", or convert it yourself (python -m genmod.eval.convert) and pass --weights", sha256_prefix="6726825d"),
    *(Asset(n, EDM_URL + n + ".pkl", "NVlabs/edm network (genmod.convert edm NAME)",
            ", or pass that path to genmod.convert edm") for n in EDM_NETS),
    Asset("vgg16", "https://download.pytorch.org/models/vgg16-397923af.pth",
          "torchvision's ImageNet VGG-16, LPIPS's trunk (cm.metric=lpips)", LPIPS_MANUAL, sha256_prefix="397923af"),
    Asset("lpips_vgg", "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
          "LPIPS v0.1 heads for VGG-16 (cm.metric=lpips; the lpips wheel ships a copy)", LPIPS_MANUAL,
          file="lpips-v0.1-vgg.pth"),
]}


def cache_dir() -> str:
    return os.path.abspath(os.path.expanduser(os.environ.get(CACHE_ENV) or os.path.join("~", ".cache", "genmod")))


def _hex(v, n, where):
    if not isinstance(v, str) or len(v) != n or any(c not in "0123456789abcdef" for c in v.lower()):
        raise AssetError(f"{where}: expected {n} hex digits, got {v!r}")
    return v.lower()


def _overrides() -> dict:
    """``$GENMOD_ASSETS``: {name: {url, sha256 | md5, size}}, checked key by key."""
    path = os.environ.get(TABLE_ENV)
    if not path:
        return {}
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise AssetError(f"{TABLE_ENV}={path}: cannot read the JSON ({e})") from None
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise AssetError(f'{TABLE_ENV}={path}: expected {{"NAME": {{"url": ..., "sha256": ...}}, ...}}')
    for name, o in d.items():
        where = f"{TABLE_ENV}={path}: {name}"
        if name not in TABLE:
            raise AssetError(f"{where}: unknown asset{_did_you_mean(name)} (known: {', '.join(TABLE)})")
        bad = sorted(set(o) - {"url", "sha256", "md5", "size"})
        if bad:
            raise AssetError(f"{where}: unknown key {bad[0]!r} (url, sha256, md5, size)")
        if "url" in o and (not isinstance(o["url"], str) or _scheme(o["url"]) not in ("http", "https", "file")):
            raise AssetError(f"{where}: url must be http://, https:// or file://, got {o['url']!r}")
        if "size" in o and (not isinstance(o["size"], int) or o["size"] <= 0):
            raise AssetError(f"{where}: size must be a positive integer, got {o['size']!r}")
        for k, n in (("sha256", 64), ("md5", 32)):
            if k in o:
                o[k] = _hex(o[k], n, f"{where}.{k}")
    return d


def _scheme(url):
    return urllib.parse.urlparse(url).scheme.lower()


def _did_you_mean(name):
    m = difflib.get_close_matches(name, list(TABLE), n=1)
    return f" {name!r} (did you mean {m[0]!r}?)" if m else f" {name!r}"


def get(name: str) -> Asset:
    """The table's entry, with ``$GENMOD_ASSETS`` applied (a hash there replaces the table's)."""
    if name not in TABLE:
        raise AssetError(f"unknown asset{_did_you_mean(name)}; known: {', '.join(TABLE)}")
    a, o = TABLE[name], _overrides().get(name, {})
    if "sha256" in o or "md5" in o:
        a = dataclasses.replace(a, sha256=o.get("sha256"), md5=o.get("md5"), sha256_prefix="", size=None,
                                hash_from=TABLE_ENV)
    return dataclasses.replace(a, **{k: o[k] for k in ("url", "size") if k in o})


def path_of(a: Asset) -> str:
    return os.path.join(cache_dir(), a.file)


def _recorded(path):
    try:
        with open(path + ".sha256") as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return None


def _pinned(a: Asset, path: str) -> list:
    """[(algorithm, expected hex, where it comes from)]: the table's (or mirror file's) full hash,
    else the sha256 recorded at the first download."""
    out = [(k, getattr(a, k), a.hash_from) for k in ("sha256", "md5") if getattr(a, k)]
    if not out and _recorded(path):
        out = [("sha256", _recorded(path), f"recorded at the first download in {path}.sha256")]
    return out


def _manual(a: Asset, path: str) -> str:
    return f"download {TABLE[a.name].url} yourself and put it at {path}{a.manual}"


def _mismatch(a, path, got: dict) -> str | None:
    for algo, want, src in _pinned(a, path):
        if got[algo] != want:
            return f"its {algo} is {got[algo]}, expected {want} ({src})"
    if a.sha256_prefix and not got["sha256"].startswith(a.sha256_prefix):
        return f"its sha256 {got['sha256'][:16]}... does not start with the published {a.sha256_prefix}"
    return None


def _record(a, path, sha, log):
    """The first download of an asset without a published hash: keep its sha256 beside it."""
    if _pinned(a, path):
        return
    try:
        with open(path + ".sha256.tmp", "w") as f:
            f.write(f"{sha}  {a.file}\n")
        os.replace(path + ".sha256.tmp", path + ".sha256")
    except OSError as e:  # a read-only pre-filled cache: say so, and go on with the file as it is
        log(f"{a.name}: no published hash and cannot record its sha256 {sha} ({e})")
        return
    log(f"{a.name}: no published hash; recorded sha256 {sha} in {path}.sha256 (checked from now on)")


def file_hashes(path: str) -> dict:
    h = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for x in h.values():
                x.update(block)
    return {k: v.hexdigest() for k, v in h.items()}


def verify(a: Asset, path: str, log=None) -> str:
    """Check a cached file against its hash (recording one where none is known); -> sha256."""
    got = file_hashes(path)
    bad = _mismatch(a, path, got)
    if bad:
        raise AssetError(f"{a.name}: the cached {path} does not match: {bad}; delete it to fetch it again "
                         f"(and {path}.sha256 if that record is what is wrong)")
    _record(a, path, got["sha256"], log or _log)
    return got["sha256"]


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


class _Progress:
    """A progress bar on a terminal; a line every 10 s (and a last one) in a log file."""

    def __init__(self, name, total, log):
        self.name, self.total, self.log, self.n = name, total, log, 0
        self.t0 = self.last = time.time()
        self.tty = log is _log and sys.stderr.isatty()

    def update(self, n, final=False):
        self.n += n
        now = time.time()
        if not final and now - self.last < (0.2 if self.tty else 10.0):
            return
        self.last = now
        mb = lambda b: f"{b / 1e6:.1f}"  # noqa: E731
        of = f"/{mb(self.total)} MB ({100 * self.n / self.total:.0f}%)" if self.total else " MB"
        line = f"{self.name}: {mb(self.n)}{of}, {self.n / 1e6 / max(now - self.t0, 1e-6):.1f} MB/s"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
            sys.stderr.flush()
        else:
            self.log(line)


def _download(a: Asset, path: str, log) -> None:
    """Stream ``a.url`` to a temporary file, check it, rename it into place (lock held)."""
    for old in glob.glob(glob.escape(path) + ".part.*"):  # a killed download's leftovers
        os.remove(old)
    tmp = f"{path}.part.{socket.gethostname()}.{os.getpid()}"
    log(f"{a.name}: fetching {a.url} -> {path}")
    try:
        if _scheme(a.url) not in ("http", "https", "file"):
            raise ValueError(f"unsupported URL scheme {_scheme(a.url)!r}")
        h = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
        req = urllib.request.Request(a.url, headers={"User-Agent": "genmod"})
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r, open(tmp, "wb") as f:
            length = int(r.headers.get("Content-Length") or 0) or None
            bar = _Progress(a.name, length or a.size, log)
            for block in iter(lambda: r.read(1 << 20), b""):
                f.write(block)
                for x in h.values():
                    x.update(block)
                bar.update(len(block))
            bar.update(0, final=True)
        n = os.path.getsize(tmp)
        if length is not None and n != length:
            raise ValueError(f"connection cut after {n:,} of {length:,} bytes")
        if a.size is not None and n != a.size:
            raise ValueError(f"got {n:,} bytes, expected {a.size:,}")
        got = {k: v.hexdigest() for k, v in h.items()}
        bad = _mismatch(a, path, got)
        if bad:
            raise ValueError(f"wrong file: {bad}")
        _record(a, path, got["sha256"], log)
        os.replace(tmp, path)
    except (OSError, ValueError, http.client.HTTPException) as e:
        why = e.reason if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError) else e
        why = (str(why).splitlines() or [""])[0][:200] or type(e).__name__
        raise AssetError(f"cannot fetch {a.name} from {a.url}: {why}; nothing was kept. Run again to retry, "
                         f"or {_manual(a, path)}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fetch(name: str, log=None) -> str:
    """The verified cached file of asset ``name``, downloaded first if absent; -> its path.
    Concurrent callers on one cache: the lock holder downloads, the others wait for the file."""
    from genmod.lock import LockError, WorkdirLock

    log = log or _log
    a = get(name)
    path = path_of(a)
    lock, waiting = WorkdirLock(os.path.dirname(path)), False
    lock.path = path + ".lock"  # the workdir lock's O_EXCL file and stale-holder rules, per asset
    fresh = False
    while not os.path.exists(path):
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            lock.acquire()
        except LockError:
            if not waiting:
                log(f"{a.name}: another process is fetching it ({path}.lock); waiting for it")
                waiting = True
            time.sleep(0.2)
            continue
        except OSError as e:
            raise AssetError(f"{a.name}: cannot write the cache {os.path.dirname(path)} ({e}); set "
                             f"{CACHE_ENV} to a writable folder, or {_manual(a, path)}") from None
        try:
            if not os.path.exists(path):
                _download(a, path, log)
                fresh = True
        finally:
            lock.release()
    if not fresh:  # just downloaded: checked on the way in
        verify(a, path, log)
    return path


def state(a: Asset) -> str:
    """What the cache holds for ``a`` (unverified: listing never hashes gigabytes)."""
    path = path_of(a)
    if os.path.exists(path):
        return f"cached ({os.path.getsize(path) / 1e6:.1f} MB)"
    if glob.glob(glob.escape(path) + ".part.*"):
        return "absent (a download is under way or was cut)"
    return "absent"


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m genmod.assets", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="every asset with its cache state")
    f = sub.add_parser("fetch", help="download and verify assets into the cache")
    f.add_argument("names", nargs="+", metavar="NAME")
    a = p.parse_args(argv)
    try:
        if a.cmd == "list":
            mirror = os.environ.get(TABLE_ENV)
            print(f"cache {cache_dir()}" + (f", overrides {mirror}" if mirror else ""))
            for n in TABLE:
                x = get(n)
                h = (f"{'sha256' if x.sha256 else 'md5'} pinned" if x.sha256 or x.md5 else
                     "sha256 recorded" if _recorded(path_of(x)) else "sha256 at first download")
                h += f" ({x.sha256_prefix}...)" if x.sha256_prefix else ""
                size = f"{x.size / 1e6:.1f} MB" if x.size else "size ?"
                print(f"{n:<28} {state(x):<18} {size:>9}  {h:<38} {x.what}")
            return 0
        for n in a.names:
            get(n)  # every name checked before anything is fetched
        for n in a.names:
            print(f"{n}: {fetch(n)}")
    except AssetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
