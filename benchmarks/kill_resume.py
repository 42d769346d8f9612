"""Kill -9 at random moments, restart, and check the resumed run ends bit-identical to an
uninterrupted one.

    python benchmarks/kill_resume.py --trials 20

Each trial: start training (edm_toy, a checkpoint every 5 steps), SIGKILL it 1-2 times, check
each restart resumes from the newest finalised checkpoint on disk at the kill (a partial save
is never read, a stale workdir lock never blocks), run to completion, and compare every leaf of
the final state with an uninterrupted reference run. The kill moments rotate over three kinds:
``uniform`` (drawn uniformly over the run: async saves are in flight much of the time),
``ckpt`` (the moment an Orbax save's temporary directory appears: mid-write) and ``compile``
(before the first step has been logged: during start-up and the first compile). Prints one
line per trial and a summary.
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


def _watch_for_tmp(workdir, p, timeout, nth=0):
    """SIGKILL ``p`` as soon as the temporary directory of the ``nth`` (0-based) Orbax save
    seen appears (or at ``timeout``)."""
    d = os.path.join(workdir, "ckpt", "main")
    t0, seen = time.perf_counter(), set()
    while time.perf_counter() - t0 < timeout and p.poll() is None:
        names = os.listdir(d) if os.path.isdir(d) else []
        seen |= {n for n in names if "tmp" in n}
        if len(seen) > nth:
            break
        time.sleep(0.002)
    p.send_signal(signal.SIGKILL)


def run(workdir, kill_after=None, kind="uniform", nth=0):
    """Run to completion, or SIGKILL: ``uniform``: ``kill_after`` seconds after the first step
    logs; ``ckpt``: at the ``nth`` checkpoint write seen after the first step (``kill_after``
    bounds the wait); ``compile``: ``kill_after`` seconds after the start, before the first step
    logs. Returns (the 'resuming'/'unreadable'/'integrity' lines it printed, seconds from the
    first step to exit)."""
    p = subprocess.Popen([sys.executable, "-m", "genmod.launch", *ARGS, "--workdir", workdir], cwd=REPO, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    head = []
    if kill_after is not None and kind == "compile":
        time.sleep(kill_after)
        p.send_signal(signal.SIGKILL)
        head = p.communicate()[0].splitlines(keepends=True)
        notes = [ln.strip() for ln in head if "resuming from step" in ln or "complete at step" in ln
                 or "unreadable" in ln or "integrity" in ln or ln.startswith("error:")]
        return notes, 0.0
    for line in p.stdout:
        head.append(line)
        if "] step " in line or "complete" in line or line.startswith("error:"):
            break
    t = time.perf_counter()
    if kill_after is None:
        rest = p.communicate(timeout=600)[0]
        assert p.returncode == 0, (''.join(head) + rest)[-2000:]
    elif kind == "ckpt":
        _watch_for_tmp(workdir, p, kill_after, nth)
        p.wait()
    else:
        time.sleep(kill_after)
        p.send_signal(signal.SIGKILL)
        p.wait()
    notes = [ln.strip() for ln in head if "resuming from step" in ln or "complete at step" in ln
             or "unreadable" in ln or "integrity" in ln or ln.startswith("error:")]
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


KINDS = ("uniform", "ckpt", "compile")


def trial(ref_state, seed, root, duration, kind="uniform", startup=10.0):
    """Kill 1-2 times (moments of ``kind``), then finish. Every restart must resume from the
    newest finalised checkpoint present at the kill (never a partial one)."""
    import jax
    import numpy as np

    rng = random.Random(seed)
    wd = os.path.join(root, f"t{seed}")
    kills, events, ok = rng.randint(1, 2), [], True
    expect = None
    for i in range(kills + 1):
        if i == kills:
            when = None
        elif kind == "compile":
            when = rng.uniform(0.5, startup)
        elif kind == "ckpt":
            when = duration
        else:
            when = rng.uniform(0.0, duration)
        notes, _ = run(wd, kill_after=when, kind=kind, nth=rng.randint(0, 4))
        if any(n.startswith("error:") for n in notes):
            ok = False
            events.append(f"error: {notes}")
        got = next((int(n.rsplit(" step ", 1)[1].split()[0]) for n in notes if "resuming" in n or "complete" in n), None)
        if i > 0 and (kind != "compile" or i == kills or got is not None):
            ok &= got == expect
            events.append(f"resumed {got} (expected {expect})")
        steps, partial = committed_steps(wd)
        expect = steps[-1] if steps else None
        if i < kills:
            events.append(f"killed ({kind}): ckpts {steps}" + (f" + partial {partial}" if partial else ""))
    state = final_state(wd)
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)))
    return same and ok, events


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of kill kinds, rotated ({', '.join(KINDS)})")
    a = p.parse_args()
    kinds = a.kinds.split(",")
    root = tempfile.mkdtemp()
    t0 = time.perf_counter()
    _, duration = run(os.path.join(root, "ref"))
    startup = time.perf_counter() - t0 - duration  # start-up + first compile
    ref = final_state(os.path.join(root, "ref"))
    print(f"reference run: {startup:.1f} s to the first step, {duration:.1f} s from it to exit; kills drawn "
          f"over those", flush=True)
    ok = 0
    for t in range(a.trials):
        kind = kinds[t % len(kinds)]
        good, events = trial(ref, t, root, duration, kind, startup)
        ok += good
        print(f"trial {t}: {'; '.join(events)}; resumed right and bit-identical: {good}", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    print(f"{ok} passed, {a.trials - ok} failed")
    sys.exit(0 if ok == a.trials else 1)


if __name__ == "__main__":
    main()
