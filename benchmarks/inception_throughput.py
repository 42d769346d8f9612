"""Inception feature throughput: genmod's JAX network vs pytorch-fid, same machine, same run.

    pip install torch==2.13.0 pytorch-fid      # one command: keeps the CPU torch
    python benchmarks/inception_throughput.py [--num 64] [--batch 32] [--size 32]

Both networks get the same random weights (pytorch-fid's module tree, converted through
``genmod.eval.convert``) and the same uint8 images (resized to 299 inside both, as in FID).
Prints images/s for each, the ratio, the compile time and the worst per-image relative
feature difference; then the roofline: the network's FLOPs per image (XLA's cost analysis),
the rate each side sustains, and the fastest kernel this host runs (an sgemm under XLA and
torch, a oneDNN convolution of Mixed_5's shape), all measured in the same run. Their quotient
bounds the ratio any implementation of the same arithmetic can reach against pytorch-fid.
Runs on whatever JAX's default backend is (CPU here; torch stays on CPU unless --torch-device
says otherwise).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32, help="input resolution (square)")
    p.add_argument("--torch-device", default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over --num images (best kept)")
    p.add_argument("--cpu-tricks", choices=("auto", "on", "off"), default="auto",
                   help="InceptionFeatures' cpu_tricks (auto: on when JAX runs on CPU)")
    p.add_argument("--no-roofline", dest="roofline", action="store_false",
                   help="skip the FLOP count and the peak-kernel measurements")
    a = p.parse_args(argv)

    import jax
    import torch

    from genmod.eval import convert
    from genmod.eval.inception import InceptionFeatures
    from genmod.eval.torch_reference import random_pytorch_fid_model, smooth_images, to_torch
    from peer_edm import cpu_model

    model = random_pytorch_fid_model(seed=0).to(a.torch_device)
    with tempfile.TemporaryDirectory() as tmp:
        pth, npz = os.path.join(tmp, "w.pth"), os.path.join(tmp, "w.npz")
        torch.save(model.backbone.state_dict(), pth)
        convert.convert(pth, npz)
        feats = InceptionFeatures(weights=npz, batch_size=a.batch,
                                  cpu_tricks={"auto": None, "on": True, "off": False}[a.cpu_tricks])
    images = smooth_images(a.num, a.size, a.size, seed=1)

    t0 = time.perf_counter()
    feats(images[:a.batch])  # compile (+ one batch)
    compile_s = time.perf_counter() - t0

    def run_torch():
        outs = []
        with torch.no_grad():
            for i in range(0, a.num, a.batch):
                x = to_torch(images[i:i + a.batch]).to(a.torch_device)
                outs.append(model(x)[0].squeeze(3).squeeze(2).cpu().numpy())
        return np.concatenate(outs)

    with torch.no_grad():
        model(to_torch(images[:a.batch]).to(a.torch_device))  # warm-up
    jax_t, torch_t = [], []
    for _ in range(a.repeats):  # interleaved, best of each: the machine's load drifts
        jax_t.append(_timed(lambda: feats(images)))
        torch_t.append(_timed(run_torch))
    jax_s, torch_s = min(jax_t), min(torch_t)
    jax_out, torch_out = feats(images), run_torch().astype(np.float64)
    rel = np.linalg.norm(jax_out - torch_out, axis=1) / np.linalg.norm(torch_out, axis=1)

    dev = jax.devices()[0]
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs visible; "
          f"jax {jax.__version__} on {dev.platform} ({dev.device_kind}, {jax.device_count()} device(s)); "
          f"torch {torch.__version__} on {a.torch_device} ({torch.get_num_threads()} threads)")
    print(f"{a.num} images {a.size}x{a.size} -> 299, batch {a.batch}, cpu_tricks {a.cpu_tricks}; "
          f"XLA_FLAGS {os.environ.get('XLA_FLAGS', '')!r}")
    print(f"jax:         {a.num / jax_s:8.2f} img/s  (first batch incl. compile {compile_s:.1f} s)")
    print(f"pytorch-fid: {a.num / torch_s:8.2f} img/s")
    print(f"ratio jax/pytorch-fid: {torch_s / jax_s:.2f}x  (best of {a.repeats} interleaved passes; "
          f"all jax {', '.join(f'{a.num / t:.1f}' for t in jax_t)}, "
          f"pytorch-fid {', '.join(f'{a.num / t:.1f}' for t in torch_t)} img/s)")
    print(f"max per-image relative feature difference: {rel.max():.2e}")
    if a.roofline:
        roofline(feats.variables, a.num / jax_s, a.num / torch_s)


def roofline(variables, jax_rate, torch_rate):
    """FLOPs per image, each side's sustained GFLOP/s, and this host's fastest kernels."""
    import jax
    import jax.numpy as jnp
    import torch

    from genmod.eval.inception import RESOLUTION, InceptionV3FID
    from genmod.nets import onednn

    x = jax.ShapeDtypeStruct((1, RESOLUTION, RESOLUTION, 3), jnp.float32)
    cost = jax.jit(InceptionV3FID().apply).lower(variables, x).compile().cost_analysis()  # lax convs
    flops = (cost[0] if isinstance(cost, list) else cost)["flops"]

    def best(fn, n=5):
        fn()
        return min(_timed(fn) for _ in range(n))

    a = jnp.ones((4096, 4096))
    mm = jax.jit(lambda a: a @ a)
    peaks = {"XLA sgemm 4096^2": 2 * 4096 ** 3 / best(lambda: mm(a).block_until_ready())}
    at = torch.ones(4096, 4096)
    peaks["torch sgemm 4096^2"] = 2 * 4096 ** 3 / best(lambda: at @ at)
    xc, wc = jnp.ones((32, 35, 35, 96)), jnp.full((3, 3, 96, 96), 0.01)
    cv = jax.jit(lambda x, w: onednn.conv(x, w, padding=((1, 1), (1, 1))))
    tag = "oneDNN" if onednn.enabled(xc, wc) else "XLA"
    peaks[f"{tag} conv 3x3 96->96 at 35x35, batch 32"] = (
        2 * 32 * 35 * 35 * 96 * 96 * 9 / best(lambda: cv(xc, wc).block_until_ready()))
    top = max(peaks.values())
    print(f"roofline: {flops / 1e9:.2f} GFLOP per image (XLA's cost analysis); sustained "
          f"jax {jax_rate * flops / 1e9:.0f} GFLOP/s, pytorch-fid {torch_rate * flops / 1e9:.0f} GFLOP/s; "
          + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items()) + " GFLOP/s")
    print(f"ceiling: the fastest kernel's rate over pytorch-fid's sustained one: {top / (torch_rate * flops):.2f}x "
          f"(every FLOP at that rate, nothing else); jax sustains {jax_rate * flops / top:.0%} of it")


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
