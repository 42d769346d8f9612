"""Kill -9 at random moments (often during an async checkpoint save), restart, and check the
resumed run ends bit-identical to an uninterrupted one.

    python benchmarks/kill_resume.py --trials 20

Each trial: start training (edm_toy, a checkpoint every 5 steps), SIGKILL it at a random
moment after training starts, re-run the same command to completion, compare every leaf of
the final state with the reference run. Prints one line per trial and a summary.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--config", "edm_toy", "--config.total_steps=60", "--config.batch_size=64", "--config.log_every=5",
        "--config.ckpt_every=5", "--config.sample_every=0", "--config.keep=2"]
ENV = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


def run(workdir, kill_after=None):
    """Run to completion, or SIGKILL ``kill_after`` seconds after the first step logs."""
    p = subprocess.Popen([sys.executable, "-m", "genmod.launch", *ARGS, "--workdir", workdir], cwd=REPO, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if kill_after is None:
        out = p.communicate(timeout=600)[0]
        assert p.returncode == 0, out[-2000:]
        return out
    for line in p.stdout:
        if "] step " in line or "complete" in line:
            break
    time.sleep(kill_after)
    p.send_signal(signal.SIGKILL)
    p.wait()
    return None


def final_state(workdir):
    sys.path.insert(0, REPO)
    from tests.helpers import raw_state

    return raw_state(workdir)


def trial(ref_state, seed, root):
    import numpy as np
    import jax

    rng = random.Random(seed)
    wd = os.path.join(root, f"t{seed}")
    kills = rng.randint(1, 2)
    for _ in range(kills):
        run(wd, kill_after=rng.uniform(0.0, 1.5))
    out = run(wd)
    state = final_state(wd)
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)))
    resumed = [line for line in out.splitlines() if "resuming from step" in line or "unreadable" in line]
    return same, kills, resumed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=20)
    a = p.parse_args()
    root = tempfile.mkdtemp()
    run(os.path.join(root, "ref"))
    ref = final_state(os.path.join(root, "ref"))
    ok = 0
    for t in range(a.trials):
        same, kills, resumed = trial(ref, t, root)
        ok += same
        print(f"trial {t}: {kills} kill(s); {'; '.join(resumed) or 'fresh start'}; bit-identical: {same}", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    print(f"{ok} passed, {a.trials - ok} failed")
    sys.exit(0 if ok == a.trials else 1)


if __name__ == "__main__":
    main()
