"""Where along the noise axis does a consistency model lose the 1-step map? (issue #16)

    python benchmarks/cm_levels.py checkpoints/robustness/cd/random_0/s0 random:0

For 4,000 exact probability-flow ODE trajectories of the mixture (Heun on a 300-level Karras grid
plus the N=18 levels, from sigma 80), compares the model's f(x_t, t) at each of the 18 levels with
the exact endpoint of the same trajectory: median / 90th-percentile error, off-mode mass and mode
recall of f(x_t, t) (the robustness benchmark's definitions). A perfect consistency function has
error 0 at every level; 1-step sampling is the top row.
"""
import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genmod import data, edm, toy, train  # noqa: E402
from genmod.methods import cm  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workdir")
    p.add_argument("mixture", help="e.g. random:0 (the gmm: prefix is added)")
    p.add_argument("--n", type=int, default=4000)
    a = p.parse_args()
    S = train.Sampler(a.workdir)
    m, mix = S.run.method, data.mixture_of(f"gmm:{a.mixture}")
    D = lambda x, t: mix.denoiser(x, jnp.full(x.shape[:1], t))  # noqa: E731
    levels = [float(cm.karras(i, 18)) for i in range(18)][::-1]
    sig = np.unique(np.concatenate([np.asarray(edm.karras_sigmas(300, 0.002, 80.0, 7.0))[:-1], levels]))[::-1]
    x, at = 80.0 * jax.random.normal(jax.random.PRNGKey(3), (a.n, 2)), {}
    for s, s_next in zip(sig, list(sig[1:]) + [0.0]):  # Heun, the last step Euler
        at[float(s)] = x
        d = (x - D(x, s)) / s
        x_e = x + (s_next - s) * d
        x = x_e if s_next == 0 else x + (s_next - s) * 0.5 * (d + (x_e - D(x_e, s_next)) / s_next)
    x0 = np.asarray(x)
    f = m.fn(S.params["net"])
    print(f"{a.workdir} on gmm:{a.mixture}: exact endpoints off-mode {toy.mode_stats(mix, x0)[1]:.3f}")
    print("| t | median error | p90 error | off-mode | modes |\n|---|---|---|---|---|")
    for t in levels:
        y = np.asarray(f(at[min(at, key=lambda k: abs(k - t))], jnp.full((a.n,), t)))
        err = np.sqrt(((y - x0) ** 2).sum(-1))
        rec, off = toy.mode_stats(mix, y)
        print(f"| {t:.3f} | {np.median(err):.4f} | {np.quantile(err, 0.9):.4f} | {off:.3f} | {sum(rec)}/{len(rec)} |")


if __name__ == "__main__":
    main()
