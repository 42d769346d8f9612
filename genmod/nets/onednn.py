"""2-D convolutions on oneDNN for XLA:CPU, as JAX primitives over an XLA FFI custom call.

Why: XLA:CPU runs a convolution as Eigen's im2col followed by an sgemm. On an AVX-512 host (Zen 4)
that reaches 150-180 GFLOP/s, while oneDNN's direct kernels on the same NHWC tensors reach 200-230:
the forward, input gradient and weight gradient of DDPM++'s 3x3 convolutions each ran 1.2-1.7x
faster (docs/benchmarks.md, "Performance, round 9"). XLA gives no route to them, so genmod builds a
small FFI library (``onednn_conv.cc``, beside this file) against the ``onednn-cpu-gomp`` wheel.

Each call splits its batch into chunks that run single-threaded on XLA's own intra-op threads
(an OpenMP team of oneDNN's own beside XLA's spinning pool left the 8x8 net's step 0.72x slower).

Three primitives, each bilinear in its two operands, so that each one's transposes are the other
two and every order of ``jax.grad`` / ``jax.jvp`` stays on oneDNN:

    conv(x, w) -> y,   conv_dx(dy, w) -> dx,   conv_dw(x, dy) -> dw

Off the CPU they lower to ``lax.conv_general_dilated`` and its transposes, but ``enabled`` only
routes float32 convolutions of a single-device CPU process here (a custom call has no sharding
rule, so the SPMD partitioner would replicate it). Opt out with ``GENMOD_ONEDNN=0``.

The library is compiled once per source, jaxlib and oneDNN (a C++17 compiler, about 4 s) into
``$GENMOD_CACHE`` (default ``~/.cache/genmod``), which must be the user's own and not
world-writable, as must the library (it is loaded into the process). Without oneDNN's wheels or a
compiler, ``enabled`` is False and the callers keep XLA's own convolution (logged as a warning
where the wheels are installed, at INFO level where they are not).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

log = logging.getLogger(__name__)

SRC = Path(__file__).with_name("onednn_conv.cc")
TARGETS = {"conv": "GenmodConvFwd", "conv_dx": "GenmodConvBwdData", "conv_dw": "GenmodConvBwdWeights"}
DN = ("NHWC", "HWIO", "NHWC")


def _prefixes():
    """Where pip puts the oneDNN wheels' ``include/`` and ``lib/`` (their files are wheel data)."""
    seen = []
    for p in (sysconfig.get_paths()["data"], sys.prefix, sys.base_prefix):
        if p not in seen:
            seen.append(p)
    return [Path(p) for p in seen]


def _find_onednn():
    for p in _prefixes():
        if (p / "include/oneapi/dnnl/dnnl.hpp").exists() and (p / "lib/libdnnl.so").exists():
            return p
    return None


def _cache_dir() -> Path:
    return Path(os.environ.get("GENMOD_CACHE") or Path.home() / ".cache" / "genmod")


def build() -> Path:
    """Compile the FFI library if this source, jaxlib and oneDNN have no build yet; return its path.
    Raises RuntimeError with the reason when it cannot."""
    import jaxlib

    prefix = _find_onednn()
    if prefix is None:
        raise RuntimeError("oneDNN's headers or library not found (pip install onednn-cpu-gomp "
                           "onednn-devel-cpu-gomp)")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        raise RuntimeError("no C++ compiler (c++ / g++ / $CXX)")
    lib = (prefix / "lib/libdnnl.so").resolve()
    key = hashlib.sha256(b"\0".join([SRC.read_bytes(), jaxlib.__version__.encode(), str(lib).encode(),
                                     cxx.encode()])).hexdigest()[:16]
    out = _cache_dir() / f"genmod_onednn_conv-{key}.so"
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _check_private(out.parent)
    if out.exists():
        _check_private(out)
        return out
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)  # built aside, then renamed: no reader
    os.close(fd)                                              # ever sees a partial file
    cmd = [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{jax.ffi.include_dir()}",
           f"-I{prefix / 'include'}", str(SRC), f"-L{lib.parent}", "-ldnnl", "-lgomp",
           f"-Wl,-rpath,{lib.parent}", "-o", tmp]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        os.unlink(tmp)
        errors = [line for line in r.stderr.splitlines() if "error" in line] or r.stderr.splitlines()
        raise RuntimeError(f"compiling {SRC.name} failed: {errors[0] if errors else r.returncode}")
    os.replace(tmp, out)
    return out


def _check_private(path: Path):
    """The library is loaded into the process: refuse a cache (or a cached build) that another user
    owns or anyone could have written. Group-writable passes: with a umask of 002 (user private
    groups, Debian's and Ubuntu's default) the cache's own directories are created that way."""
    st = path.stat()
    if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o002):
        raise RuntimeError(f"{path} is owned by uid {st.st_uid} with mode {st.st_mode & 0o777:o}: not "
                           f"loading a library from it (make it yours and not world-writable, or set "
                           f"GENMOD_CACHE)")


@functools.cache
def available() -> bool:
    """Whether the FFI targets are built, loaded and registered (once per process)."""
    if os.environ.get("GENMOD_ONEDNN", "1") == "0":
        return False
    try:
        lib = ctypes.cdll.LoadLibrary(str(build()))
    except (RuntimeError, OSError) as e:  # a warning where the wheels are there and it still fails
        (log.warning if _find_onednn() else log.info)(
            "genmod: XLA's own convolutions (oneDNN unavailable: %s)", e)
        return False
    for prim, target in zip(_PRIMS, TARGETS.values()):
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, target)), platform="cpu")
        mlir.register_lowering(prim, _ffi_rule(target), platform="cpu")
    return True


def one_device() -> bool:
    return jax.device_count() == 1


def enabled(x, w) -> bool:
    """Route this convolution to oneDNN? float32, a CPU backend, one device, library available."""
    return (x.dtype == jnp.float32 and w.dtype == jnp.float32 and jax.default_backend() == "cpu"
            and one_device() and available())


# --------------------------------------------------------------------------------------
# Reference semantics (lax), used off the CPU, for batching fallbacks and in the tests.

def ref_conv(x, w, *, strides, padding):
    return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)


def ref_conv_dx(dy, w, *, strides, padding, in_hw):
    x = jax.ShapeDtypeStruct((dy.shape[0], *in_hw, w.shape[2]), dy.dtype)
    return jax.linear_transpose(lambda x: ref_conv(x, w, strides=strides, padding=padding), x)(dy)[0]


def ref_conv_dw(x, dy, *, strides, padding, kernel):
    w = jax.ShapeDtypeStruct((*kernel, x.shape[3], dy.shape[3]), x.dtype)
    return jax.linear_transpose(lambda w: ref_conv(x, w, strides=strides, padding=padding), w)(dy)[0]


# --------------------------------------------------------------------------------------
# Primitives.

conv_p, conv_dx_p, conv_dw_p = _PRIMS = [Primitive(f"genmod_onednn_{n}") for n in TARGETS]
_REFS = {conv_p: ref_conv, conv_dx_p: ref_conv_dx, conv_dw_p: ref_conv_dw}


def _out_hw(hw, k, strides, padding):
    return tuple((n + lo + hi - kk) // s + 1 for n, kk, s, (lo, hi) in zip(hw, k, strides, padding))


def _shape(prim, a, b, *, strides, padding, in_hw=None, kernel=None):
    if prim is conv_p:      # (x, w)
        return (a.shape[0], *_out_hw(a.shape[1:3], b.shape[:2], strides, padding), b.shape[3])
    if prim is conv_dx_p:   # (dy, w)
        return (a.shape[0], *in_hw, b.shape[2])
    return (*kernel, a.shape[3], b.shape[3])  # conv_dw_p: (x, dy)


def conv(x, w, *, strides=(1, 1), padding=((0, 0), (0, 0))):
    """``lax.conv_general_dilated(x, w, strides, padding, ("NHWC", "HWIO", "NHWC"))`` on oneDNN
    (on lax's convolutions where the library is not available)."""
    available()  # registers the CPU lowerings
    return conv_p.bind(x, w, strides=tuple(strides), padding=tuple(map(tuple, padding)))


def _geometry(strides, padding):
    (pt, pb), (pl, pr) = padding
    return {k: np.int64(v) for k, v in zip(("sh", "sw", "pt", "pb", "pl", "pr"), (*strides, pt, pb, pl, pr))}


def _ffi_rule(target):
    rule = jax.ffi.ffi_lowering(target)

    def lower(ctx, a, b, *, strides, padding, **_):
        return rule(ctx, a, b, **_geometry(strides, padding))
    return lower


# Transposes: each primitive is bilinear, and one identity gives all six,
#   <dy, conv(x, w)> = <conv_dx(dy, w), x> = <conv_dw(x, dy), w>.
def _geo(p):
    """The geometry every primitive shares (conv_dx adds in_hw, conv_dw the kernel's size)."""
    return {"strides": p["strides"], "padding": p["padding"]}


def _t_conv_x(ct, x, w, **p):
    return conv_dx_p.bind(ct, w, in_hw=tuple(x.aval.shape[1:3]), **_geo(p))


def _t_conv_w(ct, x, w, **p):
    return conv_dw_p.bind(x, ct, kernel=tuple(w.aval.shape[:2]), **_geo(p))


def _t_dx_dy(ct, dy, w, **p):
    return conv_p.bind(ct, w, **_geo(p))


def _t_dx_w(ct, dy, w, **p):
    return conv_dw_p.bind(ct, dy, kernel=tuple(w.aval.shape[:2]), **_geo(p))


def _t_dw_x(ct, x, dy, **p):
    return conv_dx_p.bind(dy, ct, in_hw=tuple(x.aval.shape[1:3]), **_geo(p))


def _t_dw_dy(ct, x, dy, **p):
    return conv_p.bind(x, ct, **_geo(p))


def _batch(prim, args, dims, **p):
    """vmap: fold the vmapped axis into the batch where the second operand is shared (conv, conv_dx);
    otherwise (per-example weights, or conv_dw) vmap the lax reference."""
    (a, b), (da, db) = args, dims
    if prim is not conv_dw_p and db is None:
        a = jnp.moveaxis(a, da, 0)
        out = prim.bind(a.reshape(-1, *a.shape[2:]), b, **p)
        return out.reshape(a.shape[0], -1, *out.shape[1:]), 0
    return jax.vmap(functools.partial(_REFS[prim], **p), in_axes=(da, db))(a, b), 0


for _prim, (_tl, _tr) in zip(_PRIMS, [(_t_conv_x, _t_conv_w), (_t_dx_dy, _t_dx_w), (_t_dw_x, _t_dw_dy)]):
    _prim.def_abstract_eval(lambda a, b, _prim=_prim, **p: jax.core.ShapedArray(_shape(_prim, a, b, **p), a.dtype))
    _prim.def_impl(lambda a, b, _prim=_prim, **p: jax.jit(functools.partial(_prim.bind, **p))(a, b))
    ad.defbilinear(_prim, _tl, _tr)
    batching.primitive_batchers[_prim] = functools.partial(_batch, _prim)
    mlir.register_lowering(_prim, mlir.lower_fun(_REFS[_prim], multiple_results=False))
