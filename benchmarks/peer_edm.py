"""genmod vs NVlabs/edm on the same network, batch and machine: train step, forward and Heun
sampling img/s, back to back in one process tree, with their ratios.

    python benchmarks/peer_edm.py                              # DDPM++ ch 64, mult 1-2-2, 32x32, batch 32
    python benchmarks/peer_edm.py --res 8 --ch 32 --mult 1,2 --blocks 1 --attn 4 --batch 64 --steps 20

The peer is NVlabs/edm's own code (``../shared/peers/edm``, or ``--edm-dir``): EDMPrecond +
SongUNet DDPM++ + EDMLoss + Adam, as ``../shared/peers/edm_step.py`` runs it. genmod runs
``edm_cifar10`` with the same network (dropout 0, no augmentation, unconditional), its real train
rule (Adam + EMA). Each side runs in its own subprocess (no thread pools shared), sides
alternate for ``--rounds`` rounds and the medians are printed, so background load hits both;
each round's figure is itself the median of ``--steps`` synced calls after a warm-up (``timed``).
Both run with the glibc tunable ``genmod.launch`` sets for itself (``genmod.hugepages``).
Sampling: 18 Heun steps (35 NFE) on EDM's Karras schedule; the peer's loop is written here.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = os.path.join(os.path.dirname(ROOT), "shared", "peers", "edm")
sys.path.insert(0, ROOT)


def timed(fn, sync, n, warm_s=3.0):
    """Median seconds per call of ``fn`` over ``n`` synced calls, after a warm-up of at least
    two calls and ``warm_s`` seconds. Both sides' first steps after compiling run up to 1.5x
    slower than their steady state (allocator, page and clock warm-up), and single calls catch
    other tenants' load: a mean over 5 calls after 2 warm-ups once put the 8x8 net at 0.64x
    and, 15 minutes later with 20 calls, at 1.03x."""
    t = time.perf_counter()
    for i in range(1000):
        sync(fn())
        if i >= 1 and time.perf_counter() - t >= warm_s:
            break
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        sync(fn())
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def karras(n, smin=0.002, smax=80.0, rho=7.0):
    import numpy as np

    i = np.arange(n)
    s = (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return np.append(s, 0.0)


def torch_step(a):
    """(net, x, step) for NVlabs/edm's train step on the peer network: EDMPrecond + SongUNet
    DDPM++ + EDMLoss + Adam, as ``../shared/peers/edm_step.py`` runs it."""
    import torch

    sys.path.insert(0, a.edm_dir)
    from training.loss import EDMLoss
    from training.networks import EDMPrecond

    torch.manual_seed(0)
    net = EDMPrecond(img_resolution=a.res, img_channels=3, label_dim=0, use_fp16=False, model_type="SongUNet",
                     embedding_type="positional", encoder_type="standard", decoder_type="standard",
                     channel_mult_noise=1, resample_filter=[1, 1], model_channels=a.ch, channel_mult=a.mult,
                     num_blocks=a.blocks, attn_resolutions=a.attn, dropout=0.0)
    loss_fn, opt = EDMLoss(), torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(a.batch, 3, a.res, a.res)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net=net, images=x).sum() / a.batch
        loss.backward()
        opt.step()
        return loss

    return net, x, step


def side_torch(a):
    import torch

    net, x, step = torch_step(a)
    out = {"params": sum(p.numel() for p in net.parameters()), "train": timed(step, lambda r: r, a.steps)}
    sigma = torch.full((a.batch,), 1.0)
    with torch.no_grad():
        out["forward"] = timed(lambda: net(x, sigma), lambda r: r, a.steps)
        t_steps = torch.as_tensor(karras((a.nfe + 1) // 2), dtype=torch.float32)

        def heun():
            xi = torch.randn(a.batch, 3, a.res, a.res) * t_steps[0]
            for i in range(len(t_steps) - 1):
                t0, t1 = t_steps[i], t_steps[i + 1]
                d = (xi - net(xi, t0.expand(a.batch))) / t0
                xn = xi + (t1 - t0) * d
                if t1 > 0:
                    xn = xi + (t1 - t0) * 0.5 * (d + (xn - net(xn, t1.expand(a.batch))) / t1)
                xi = xn
            return xi
        out["sample"] = timed(heun, lambda r: r, max(1, a.steps // 5))
    return out


def genmod_stage(a):
    """(StageRun, initial state, one batch) of ``edm_cifar10`` with the peer's network and batch."""
    import tempfile

    from genmod import config_lib, data, sharding, train

    c = config_lib.load("edm_cifar10")
    for k, v in {"batch_size": a.batch, "data.source": f"synthetic:{a.res}x{a.res}x3",
                 "data.shape": f"({a.res},{a.res},3)", "data.num_classes": 0, "edm.augment_p": 0.0,
                 "net.augment_dim": 0, "net.model_channels": a.ch, "net.channel_mult": str(tuple(a.mult)),
                 "net.num_blocks": a.blocks, "net.attn_resolutions": str(tuple(a.attn)), "net.dropout": 0.0}.items():
        config_lib.override(c, k, str(v))
    mesh = sharding.make_mesh(c.mesh)
    pipe = data.Pipeline(c.data, c.batch_size, sharding.batch_sharding(mesh), c.seed)
    run = next(train.iter_stages(c, tempfile.mkdtemp(), mesh, pipe.spec()))
    return run, run.load()[0], pipe.batch(0)


def side_genmod(a):
    import jax

    from genmod import train

    run, state, batch = genmod_stage(a)
    rule = jax.jit(run.method.rules()["train"], donate_argnums=0)
    box = [state]

    def step():
        box[0], m = rule(box[0], batch, run.frozen)
        return m

    sync = jax.block_until_ready
    out = {"params": int(sum(x.size for x in jax.tree.leaves(box[0].params["net"]))),
           "train": timed(step, sync, a.steps)}
    params = run.method.sample_params(box[0])
    D = run.method.denoiser(params["net"])
    fwd = jax.jit(lambda x, s: D(x, s))
    sigma = jax.numpy.full((a.batch,), 1.0)
    out["forward"] = timed(lambda: fwd(batch["x"], sigma), sync, a.steps)
    keys = train.seed_keys(range(a.batch))
    smp = jax.jit(lambda p, k: run.method.sample(p, k, run.frozen, nfe=a.nfe))
    out["sample"] = timed(lambda: smp(params, keys), sync, max(1, a.steps // 5))
    return out


def cpu_model() -> str:
    """The CPU's model name, family and model (``/proc/cpuinfo``), else the architecture: ratios
    against the peer differ between CPU families (docs/benchmarks.md "Performance, round 8"), and
    a virtual machine's name may be as short as "AMD EPYC"."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0]  # the first CPU's block
    except OSError:
        first = ""
    info = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in first.splitlines() if ":" in ln)}
    if "model name" not in info:
        return platform.processor() or platform.machine()
    return f"{info['model name']} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"


def side_env() -> dict:
    """The environment both sides run in: this one with the glibc tunable that ``genmod.launch``
    adds for itself (``genmod.hugepages``), so genmod's step is measured as users train and the
    peer under the same allocator settings."""
    from genmod import hugepages

    return hugepages.env_with_hugepages(dict(os.environ), *hugepages.machine()) or dict(os.environ)


def shape_args(p):
    """The network/batch flags (NVlabs/edm's DDPM++ at ch 64, mult 1-2-2 by default)."""
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--ch", type=int, default=64)
    p.add_argument("--mult", default="1,2,2", type=lambda v: [int(x) for x in v.split(",")])
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--attn", default=[16], type=lambda v: [int(x) for x in v.split(",") if x],
                   help="comma list of resolutions with attention ('' for none)")
    p.add_argument("--batch", type=int, default=32)
    return p


def peer_args(p):
    """``shape_args``, the NVlabs/edm checkout, and the hidden ``--side`` of a child process."""
    shape_args(p)
    p.add_argument("--edm-dir", default=PEER, help="NVlabs/edm checkout (its training/ is imported)")
    p.add_argument("--side", choices=("torch", "genmod"), help=argparse.SUPPRESS)
    return p


def run_child(a, sides: dict, script: str) -> bool:
    """In a child (``--side``): runs that side, prints its ``RESULT`` line, returns True. In the
    parent: exits with one line where NVlabs/edm is missing, else returns False."""
    if a.side:
        print("RESULT " + json.dumps(sides[a.side](a)), flush=True)
        return True
    if not os.path.isdir(os.path.join(a.edm_dir, "training")):
        sys.exit(f"{script}: no NVlabs/edm at {a.edm_dir} (expected its training/); pass --edm-dir")
    return False


def run_side(script: str, args: list, side: str, env: dict | None = None) -> dict:
    """Runs ``script args --side SIDE`` in a fresh process (its own thread pools; ``env``, or
    ``side_env()``'s) and returns the JSON it prints on its ``RESULT`` line; exits with the
    child's stderr if it fails."""
    proc = subprocess.run([sys.executable, os.path.abspath(script), *args, "--side", side],
                          capture_output=True, text=True, cwd=ROOT, env=side_env() if env is None else env)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        sys.exit(f"{os.path.basename(script)}: the {side} side failed:\n{proc.stderr[-2000:]}")
    return json.loads(line[0][7:])


def main(argv=None):
    p = peer_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--steps", type=int, default=5, help="timed train steps / forwards per round")
    p.add_argument("--nfe", type=int, default=35)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args(argv)
    if run_child(a, {"torch": side_torch, "genmod": side_genmod}, "peer_edm.py"):
        return
    args = list(argv if argv is not None else sys.argv[1:])
    runs = {"torch": [], "genmod": []}
    for r in range(a.rounds):
        for side in ("torch", "genmod"):
            runs[side].append(run_side(__file__, args, side))
            print(f"round {r} {side:>6}: " + ", ".join(f"{k} {a.batch / runs[side][-1][k]:.1f} img/s"
                                                      for k in ("train", "forward", "sample")), flush=True)
    import numpy as np

    import jax
    import torch

    med = {s: {k: float(np.median([x[k] for x in v])) for k in ("train", "forward", "sample")} for s, v in runs.items()}
    print(f"net: SongUNet DDPM++ res {a.res} ch {a.ch} mult {a.mult} blocks {a.blocks} attn {a.attn} batch {a.batch}; "
          f"params genmod {runs['genmod'][0]['params']:,} / edm {runs['torch'][0]['params']:,}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__}; "
          f"{time.strftime('%Y-%m-%d')}; medians of {a.rounds} rounds; both sides with "
          f"GLIBC_TUNABLES={side_env().get('GLIBC_TUNABLES', '')!r}")
    print("| what | NVlabs/edm img/s | genmod img/s | genmod / edm |")
    print("|---|---|---|---|")
    for k, what in (("train", "train step (loss, backward, Adam)"), ("forward", "forward (sigma 1)"),
                    ("sample", f"Heun sampling, {a.nfe} NFE")):
        e, g = a.batch / med["torch"][k], a.batch / med["genmod"][k]
        print(f"| {what} | {e:.2f} | {g:.2f} | {g / e:.2f}x |")


if __name__ == "__main__":
    main()
