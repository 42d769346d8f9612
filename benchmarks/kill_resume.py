"""Kill -9 at random moments (often during an async checkpoint save), restart, and check the
resumed run ends bit-identical to an uninterrupted one.

    python benchmarks/kill_resume.py --trials 20

Each trial: start training (edm_toy, a checkpoint every 5 steps), SIGKILL it 1-2 times at
moments drawn uniformly over the run (async saves are in flight much of the time), check
each restart resumes from the newest finalised checkpoint on disk at the kill (a partial
save is never read), run to completion, and compare every leaf of the final state with an
uninterrupted reference run. Prints one line per trial and a summary.
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
    """Run to completion, or SIGKILL ``kill_after`` seconds after the first step logs.
    Returns (the 'resuming'/'unreadable' lines it printed, seconds from first step to exit)."""
    p = subprocess.Popen([sys.executable, "-m", "genmod.launch", *ARGS, "--workdir", workdir], cwd=REPO, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    head = []
    for line in p.stdout:
        head.append(line)
        if "] step " in line or "complete" in line:
            break
    t = time.perf_counter()
    if kill_after is None:
        rest = p.communicate(timeout=600)[0]
        assert p.returncode == 0, (''.join(head) + rest)[-2000:]
    else:
        time.sleep(kill_after)
        p.send_signal(signal.SIGKILL)
        p.wait()
    notes = [ln.strip() for ln in head if "resuming from step" in ln or "complete at step" in ln or "unreadable" in ln]
    return notes, time.perf_counter() - t


def committed_steps(workdir):
    """Checkpoint steps Orbax has finalised (a save in flight is a *.orbax-checkpoint-tmp-* dir)."""
    d = os.path.join(workdir, "ckpt", "main")
    names = os.listdir(d) if os.path.isdir(d) else []
    return sorted(int(n) for n in names if n.isdigit()), [n for n in names if "tmp" in n]


def final_state(workdir):
    sys.path.insert(0, REPO)
    from tests.helpers import raw_state

    return raw_state(workdir)


def trial(ref_state, seed, root, duration):
    """Kill 1-2 times at uniform moments over the run, then finish. Every restart must resume
    from the newest finalised checkpoint present at the kill (never a partial one)."""
    import jax
    import numpy as np

    rng = random.Random(seed)
    wd = os.path.join(root, f"t{seed}")
    kills, events, ok = rng.randint(1, 2), [], True
    expect = None
    for i in range(kills + 1):
        notes, _ = run(wd, kill_after=rng.uniform(0.0, duration) if i < kills else None)
        got = next((int(n.rsplit(" step ", 1)[1].split()[0]) for n in notes if "resuming" in n or "complete" in n), None)
        if i > 0:
            ok &= got == expect
            events.append(f"resumed {got} (expected {expect})")
        steps, partial = committed_steps(wd)
        expect = steps[-1] if steps else None
        if i < kills:
            events.append(f"killed: ckpts {steps}" + (f" + partial {partial}" if partial else ""))
    state = final_state(wd)
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)))
    return same and ok, events


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=20)
    a = p.parse_args()
    root = tempfile.mkdtemp()
    _, duration = run(os.path.join(root, "ref"))
    ref = final_state(os.path.join(root, "ref"))
    print(f"reference run: {duration:.1f} s from first step to exit; kills drawn uniformly over it", flush=True)
    ok = 0
    for t in range(a.trials):
        good, events = trial(ref, t, root, duration)
        ok += good
        print(f"trial {t}: {'; '.join(events)}; resumed right and bit-identical: {good}", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    print(f"{ok} passed, {a.trials - ok} failed")
    sys.exit(0 if ok == a.trials else 1)


if __name__ == "__main__":
    main()
