"""CrossFlow sampling, latent interpolation and arithmetic from a trained workdir (an entry
point; the maths is ``genmod.crossflow``, the method ``genmod.methods.crossflow``):

    python -m genmod.crossflow_sample --workdir DIR --caption "a handwritten seven" --out x.png
    python -m genmod.crossflow_sample --workdir DIR --caption "a handwritten one" \\
        --add "a handwritten seven" --sub "a handwritten one" --alpha 1 --out arith.png
    python -m genmod.crossflow_sample --workdir DIR --caption "a handwritten zero" --interp "a handwritten eight" \\
        --out lerp.png
    python -m genmod.crossflow_sample --workdir DIR --label 3 --out x.png          # class source
    python -m genmod.crossflow_sample --workdir DIR --image lowres.png --out sr.png # image source
"""
from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from genmod.crossflow import arithmetic, lerp


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m genmod.crossflow_sample", description="CrossFlow sampling, "
                                "latent interpolation and arithmetic from a trained workdir")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True, help="PNG grid (an .npz of the samples is written beside it)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--caption", help="text source")
    g.add_argument("--label", type=int, help="class source")
    g.add_argument("--image", help="image source: a low-res PNG")
    p.add_argument("--num", type=int, default=8, help="samples (seeds seed..seed+num-1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, help="CFG weight w (default: config)")
    p.add_argument("--nfe", type=int)
    p.add_argument("--add", help="arithmetic: caption whose latent is added")
    p.add_argument("--sub", help="arithmetic: caption whose latent is subtracted")
    p.add_argument("--alpha", type=float, default=1.0, help="arithmetic edit strength")
    p.add_argument("--interp", help="interpolate from --caption to this caption (--num latents)")
    p.add_argument("--step", type=int)
    a = p.parse_args(argv)
    from PIL import Image

    from genmod import writers
    from genmod.train import load_workdir, seed_keys

    try:
        config, run, state, step = load_workdir(a.workdir, a.step)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m, params = run.method, run.method.sample_params(state)
    keys = seed_keys(np.arange(a.seed, a.seed + a.num))
    try:
        if a.image is not None:
            img = np.asarray(Image.open(a.image).convert("L" if m.shape[-1] == 1 else "RGB"), np.float32)
            cond = m.condition(image=np.broadcast_to(img.reshape(img.shape[:2] + (-1,)) / 127.5 - 1, (a.num,) + img.shape[:2] + (m.shape[-1],)))
        elif a.label is not None:
            cond = m.condition(label=np.full(a.num, a.label))
        else:
            cond = m.condition(captions=[a.caption] * a.num)
        enc = jax.jit(m.encode)
        z = enc(params, cond, keys)
        if a.interp:
            z = lerp(z, enc(params, m.condition(captions=[a.interp] * a.num), keys), a.num)
        if a.add or a.sub:
            other = lambda c: None if c is None else enc(params, m.condition(captions=[c] * a.num), keys)
            z = arithmetic(z, other(a.add), other(a.sub), a.alpha)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    x = np.asarray(jax.jit(m.decode, static_argnums=(2, 3))(params, z, a.guidance, a.nfe))
    writers.save_png(a.out, writers.preview(x))
    np.savez(a.out.rsplit(".", 1)[0] + ".npz", samples=writers.to_uint8(x), step=step)
    print(f"wrote {len(x)} samples (step {step}) to {a.out}")
    return 0



if __name__ == "__main__":
    sys.exit(main())
