"""Every method on one loop, side by side on a laptop: trains each benchmark run, measures
sample quality against NFE and training compute, throughput, and the ratios that matter,
then writes docs/RESULTS.md with its plots and sample grids.

    python benchmarks/results.py                      # everything (see docs/RESULTS.md for time)
    python benchmarks/results.py --only ring          # one group (ring | digits | mnist) or run names
    python benchmarks/results.py --skip-throughput    # quality tables only

Quality: 2-D 8-mode ring (exact teacher available): energy distance to 2,048 fresh mixture
points; digits (8x8, scikit-learn): FD_digits and k-NN precision/recall in the features of a
seeded digit classifier (genmod/eval/proxy.py; comparable across rows, not with FIDs; one
workdir alone: python -m genmod.evaluate fd --workdir DIR --features digits|mnist), 898
samples vs a fixed half (899) of the digits; the other half scores the real-data floor (FD
is biased by the sample count, so every row uses the same counts). The generators trained
on all 1,797 digits (there is no held-out split), so memorisation can score below the floor.
MNIST (28x28, ../shared/data/mnist.npz next to the checkout; its rows are skipped without
it): FD_mnist and precision/recall in a seeded MNIST classifier's features, 1,000 samples vs
1,000 test images; 1,000 other test images score the floor (training used the train split).
Each run trains into checkpoints/results/<run>; a finished run is not retrained (its timing
is kept in the workdir), so a rerun only re-evaluates; an unfinished one (interrupted) is
restarted from scratch so that its wall time is whole.
Everything is seeded: a rerun reproduces the quality numbers; timings vary with load.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    config: str                 # NAME[:presets]
    nfes: tuple
    label: str
    overrides: tuple = ()       # ("a.b", "value") pairs
    group: str = "ring"
    role: str = ""              # teacher | student | ... (for the ratio tables)


F_DIVS = ("rkl", "sf", "js", "sh", "kl", "jf", "neyman")
RUNS = [
    Run("edm", "edm_toy", (1, 5, 9, 17, 35), "EDM (Heun)", role="teacher"),
    Run("fm", "fm_toy", (1, 2, 4, 8, 16, 35), "Flow matching (Euler)"),
    Run("ict", "cm_toy:ict", (1, 2), "iCT"),
    Run("ct_batch", "cm_toy", (1, 2), "CT (minibatch posterior, soft matching)"),
    Run("cd", "cd_toy", (1, 2), "CD (exact teacher)", role="student"),
    Run("dmd2", "dmd2_toy", (1,), "DMD2", role="student"),
    *[Run(f"fdistill_{f}", "fdistill_toy", (1,), f"f-distill {f}", (("fdistill.f", f),), role="fdiv")
      for f in F_DIVS],
    Run("vsd", "dmd2_toy", (1,), "VSD / Diff-Instruct", (("dmd2.loss", "vsd"), ("dmd2.gan_gen_weight", "0.0"),
        ("dmd2.gan_critic_weight", "0.0"), ("total_steps", "1540")), role="student"),  # DisBack's base, same steps
    Run("disback", "disback_toy", (1,), "DisBack (VSD base)", role="student"),
    Run("meanflow", "meanflow_toy", (1, 2), "MeanFlow"),
    Run("sct", "scm_toy", (1, 2), "sCT"),
    Run("scd", "scm_toy:scd", (1, 2), "sCD (exact teacher)", role="student"),
    # CDRL / DRL: the NFE column is Langevin steps per level (6 levels; 0 = initializer alone)
    Run("cdrl", "cdrl_toy", (0, 1, 2, 4), "CDRL (initializer + Langevin steps/level)"),
    Run("drl", "drl_toy", (1, 2, 4), "DRL (Langevin steps/level only)"),
    Run("edm_digits", "quickstart", (5, 9, 17, 35), "EDM (Heun)", group="digits", role="teacher"),
    Run("ict_digits", "cm_digits", (1, 2), "iCT", group="digits"),
    Run("dmd2_digits", "dmd2_digits", (1,), "DMD2", (("teacher.workdir", "{root}/edm_digits"),), "digits", "student"),
    Run("fdistill_kl_digits", "dmd2_digits:fkl", (1,), "f-distill kl", (("teacher.workdir", "{root}/edm_digits"),),
        "digits", "student"),
    Run("meanflow_digits", "meanflow_digits", (1, 2), "MeanFlow", group="digits"),
    Run("sct_digits", "scm_digits", (1, 2), "sCT", group="digits"),
    Run("scd_digits", "scm_digits:scd", (1, 2), "sCD", (("teacher.workdir", "{root}/edm_digits"),), "digits",
        "student"),
    Run("cdrl_digits", "cdrl_digits", (0, 8), "CDRL (initializer + Langevin steps/level)", group="digits"),
    Run("crossflow_digits", "crossflow_captions", (1, 2, 5, 10), "CrossFlow (caption -> image, w=3)",
        group="digits"),
    Run("edm_mnist", "quickstart:mnist", (9, 35), "EDM (Heun)", group="mnist", role="teacher"),
]
MNIST = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist.npz")  # the :mnist presets' path
GROUPS = {  # group: (quality key, its name, table title)
    "ring": ("energy", "energy distance",
             "2-D 8-mode ring (exact teacher): energy distance to 2,048 mixture points (lower is better)"),
    "digits": ("fd", "FD_digits", "Digits 8x8 (scikit-learn): FD_digits, precision, recall; 898 samples vs 899 digits"),
    "mnist": ("fd", "FD_mnist", "MNIST 28x28 (the EDM recipe scaled up): FD_mnist, precision, recall; "
              "1,000 samples vs 1,000 test images"),
}


def log(*a):
    print(*a, flush=True)


# -- training -----------------------------------------------------------------------------------
def load_config(run, root, steps=None):
    from genmod import config_lib

    c = config_lib.load(run.config)
    for k, v in run.overrides:
        config_lib.override(c, k, v.format(root=root))
    if steps:
        config_lib.override(c, "total_steps", str(min(steps, c.total_steps)))
    kind, _, path = c.data.source.partition(":")
    if kind in ("npz", "idx") and not os.path.isabs(path):  # the :mnist presets' path, from the repo root
        c.data.source = f"{kind}:{os.path.join(ROOT, path)}"
    return c


def same_behaviour(old, new):
    """Whether a run made with config ``old`` (JSON) stands for one made with ``new`` today: equal,
    except keys added since that ``new`` leaves at their defaults (genmod's rule for new keys:
    absent = the behaviour before the key = its default). A new key set away from its default,
    or one whose default is not known, does not."""
    defaults = key_defaults(new.get("method"))

    def within(old, new, path=()):
        if isinstance(old, dict) and isinstance(new, dict):
            return (all(k in new and within(v, new[k], path + (k,)) for k, v in old.items())
                    and all(defaults.get(path + (k,), object()) == v for k, v in new.items() if k not in old))
        return old == new

    return within(old, new)


def key_defaults(method):
    """{key path: default} of the keys whose defaults genmod states: config_lib.base() and the
    method module's ``defaults()`` block (config.<method>), as JSON values."""
    import importlib

    from genmod import config_lib

    def flat(d, path=()):
        out = {}
        for k, v in d.items():
            out.update(flat(v, path + (k,)) if isinstance(v, dict) else {path + (k,): v})
        return out

    out = flat(json.loads(config_lib.base().to_json()))
    mod = importlib.import_module(f"genmod.methods.{method}") if method and "." not in method else None
    if mod is not None and hasattr(mod, "defaults"):
        out.update(flat({method: json.loads(mod.defaults().to_json())}))
    return out


def train_run(run, root, fresh=False, steps=None):
    """Trains (or finds finished) checkpoints/results/<run>; returns its timing record. A finished
    run whose config no longer stands for today's (``same_behaviour``) is trained again."""
    import shutil

    from genmod import config_lib, train

    wd = os.path.join(root, run.name)
    rec_path = os.path.join(wd, "results_train.json")
    if os.path.exists(rec_path) and not fresh:
        old = json.loads(config_lib.from_json(os.path.join(wd, "config.json")).to_json())
        if same_behaviour(old, json.loads(load_config(run, root, steps).to_json())):
            return dict(json.load(open(rec_path)), trained_now=False)
        log(f"  {wd}: its config changed since it ran: training it again")
        fresh = True
    if fresh and os.path.isdir(wd):
        shutil.rmtree(wd)
    if os.path.isdir(wd):  # interrupted earlier: restart, so the wall time covers the whole run
        log(f"  {wd}: unfinished earlier run, restarting it")
        shutil.rmtree(wd)
    c = load_config(run, root, steps)
    t = time.perf_counter()
    status = train.train(c, wd, log=lambda *_: None)
    wall = time.perf_counter() - t
    rates = []
    if os.path.exists(os.path.join(wd, "metrics.jsonl")):
        rates = [r["img_per_sec"] for r in map(json.loads, open(os.path.join(wd, "metrics.jsonl")))
                 if "img_per_sec" in r]
    steps = int(sum(s for s in c.get("stages_steps", ()) or ()) or c.total_steps)
    rec = {"status": status, "steps": steps, "batch": c.batch_size, "wall_s": wall,
           "train_img_per_s": float(np.median(rates[1:] or rates)) if rates else None}
    if status == "done":
        json.dump(rec, open(rec_path, "w"))
    return dict(rec, trained_now=True)


# -- quality ------------------------------------------------------------------------------------
def reference(group, n):
    """(reference set, the real set that scores the floor) of a group; the image groups' are
    the library's (genmod.eval.proxy, also behind ``python -m genmod.evaluate fd``)."""
    from genmod.data import mixture_of
    from genmod.eval import proxy

    if group == "ring":
        ring = mixture_of("gmm:ring")
        return ring.sample_np(12345, n)[0], ring.sample_np(7, n)[0]
    return proxy.digit_halves() if group == "digits" else proxy.npz_tests(MNIST)


class Features(dict):
    """The image groups' feature extractors, each made (its classifier trained) on first use."""

    def __missing__(self, group):
        from genmod.eval import proxy

        self[group] = proxy.DigitsFeatures() if group == "digits" else proxy.MnistFeatures(MNIST)
        return self[group]


def evaluate(run, root, n, features):
    """One row per NFE: quality and sampling samples/s (compile excluded)."""
    from genmod import toy, writers
    from genmod.eval import proxy
    from genmod.sample import Sampler

    ref, floor_set = reference(run.group, n)
    seeds = np.arange(len(floor_set))  # as many as the floor's set: FD is biased by the count
    rows, grid = [], None
    for nfe in run.nfes:
        s = Sampler(os.path.join(root, run.name), nfe=nfe)
        draw = s.compiled(seeds)
        t = time.perf_counter()
        x = draw()
        dt = time.perf_counter() - t
        row = {"nfe": nfe, "sample_per_s": n / dt}
        if run.group == "ring":
            row["energy"] = float(toy.energy_distance(x, ref, max_points=n))
            grid = writers.scatter_image(x)
        else:
            row.update(proxy.quality(ref, writers.to_uint8(x), features[run.group]))
            grid = writers.image_grid(writers.to_uint8(x[:100]), cols=10, scale=3)
        rows.append(row)
    return rows, grid


def floors(groups, n, features):
    """What real data scores against the references: the best any row can do."""
    from genmod import toy
    from genmod.eval import proxy

    return {g: float(toy.energy_distance(*reference(g, n)[::-1], max_points=n)) if g == "ring"
            else proxy.quality(*reference(g, n), features[g]) for g in groups}


# -- throughput (the benchmark scripts, each reporting against a baseline in the same run) -------
def run_script(args, timeout=1800):
    t = time.perf_counter()
    p = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    out = (p.stdout + ("" if p.returncode == 0 else p.stderr[-2000:])).strip()
    return {"cmd": "python " + " ".join(args), "out": out, "rc": p.returncode, "wall_s": time.perf_counter() - t}


def throughput(runs, root):
    """Loop overhead, img/s of every rule of every run's config (one f-divergence: the rules
    cost the same), Inception features vs pytorch-fid. Multi-stage methods time their first
    stage (DisBack's stage 2 runs its base's rules: the VSD row)."""
    jobs = [["benchmarks/loop_overhead.py", "--config", "edm_toy", "--steps", "1000", "--rounds", "3"]]
    seen, rel = set(), os.path.relpath(root, ROOT)
    for r in runs:
        key = (r.config, () if r.role == "fdiv" else r.overrides)
        if key not in seen:
            seen.add(key)
            ov = [a for k, v in key[1] if k != "total_steps" for a in ("--override", f"{k}={v.format(root=rel)}")]
            jobs.append(["benchmarks/step_throughput.py", "--config", r.config, "--steps", "20", *ov])
    try:
        import torch  # noqa: F401

        jobs.append(["benchmarks/inception_throughput.py", "--num", "64", "--repeats", "3"])
        if os.path.isdir(os.path.join(os.path.dirname(ROOT), "shared", "peers", "edm")):  # NVlabs/edm, same net
            jobs += [["benchmarks/peer_edm.py", "--rounds", "1"],
                     ["benchmarks/peer_edm.py", "--res", "8", "--ch", "32", "--mult", "1,2", "--blocks", "1",
                      "--attn", "4", "--batch", "64", "--steps", "10", "--rounds", "2"]]
    except ImportError:
        pass
    out = []
    for j in jobs:
        log("  " + " ".join(j))
        out.append(run_script(j))
    return out


# -- report -------------------------------------------------------------------------------------
def best(rows, key):
    return min(rows, key=lambda r: r[key]) if rows else None


def ratio_lines(res):
    """The comparisons the issue asks for, from whatever rows exist."""
    q = {name: r for name, r in res.items() if r.get("rows")}
    L = []

    def at(name, nfe):
        return next((r for r in q.get(name, {}).get("rows", []) if r["nfe"] == nfe), None)

    for group, (key, *_) in GROUPS.items():
        teacher = next((n for n, r in q.items() if r["run"]["group"] == group and r["run"]["role"] == "teacher"), None)
        t = at(teacher, 35) if teacher else None
        for name, r in q.items():
            s1 = at(name, 1)
            if t and s1 and r["run"]["group"] == group and r["run"]["role"] in ("student", "fdiv"):
                L.append(f"| {group}: {r['run']['label']} 1-step vs EDM teacher 35 NFE | {key} {s1[key]:.4f} vs "
                         f"{t[key]:.4f} ({s1[key] / t[key]:.2f}x) | sampling "
                         f"{s1['sample_per_s'] / t['sample_per_s']:.1f}x faster |")
    for name, what in (("ict", "iCT 1-step vs 2-step (ring)"), ("ict_digits", "iCT 1-step vs 2-step (digits)")):
        r1, r2 = at(name, 1), at(name, 2)
        if r1 and r2:
            k = "energy" if "energy" in r1 else "fd"
            L.append(f"| {what} | {k} {r1[k]:.4f} -> {r2[k]:.4f} ({r1[k] / r2[k]:.2f}x better) | |")
    if at("disback", 1) and at("vsd", 1):
        L.append(f"| DisBack vs its base (VSD), same total steps | energy {at('disback', 1)['energy']:.4f} vs "
                 f"{at('vsd', 1)['energy']:.4f} | |")
    for k in (1, 2, 4):
        if at("cdrl", k) and at("drl", k):
            L.append(f"| CDRL with vs without initializer, {k} Langevin step(s)/level | energy "
                     f"{at('cdrl', k)['energy']:.4f} vs {at('drl', k)['energy']:.4f} | |")
    return L


def plots(res, docs, stamp):
    """Quality vs NFE and vs training time per group (``stamp``: machine, date, command), and
    the sample grids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genmod.writers import save_png

    made = []
    for group, (key, ylabel, _) in GROUPS.items():
        rs = {n: r for n, r in res.items() if r["run"]["group"] == group and r.get("rows")}
        if not rs:
            continue
        fig, ax = plt.subplots(1, 2, figsize=(13, 4.5))
        colors = plt.get_cmap("tab20").colors
        for i, (n, r) in enumerate(rs.items()):
            nf = [row["nfe"] for row in r["rows"]]
            ys = [row[key] for row in r["rows"]]
            ax[0].plot(nf, ys, "o-" if len(nf) > 1 else "o", color=colors[i % 20], label=r["run"]["label"])
            ax[1].plot([r["train"]["wall_s"]], [min(ys)], "o", color=colors[i % 20])
        for a_, xl in zip(ax, ("NFE", "training wall time (s, incl. compile)")):
            a_.set_xscale("log"), a_.set_yscale("log"), a_.set_xlabel(xl), a_.set_ylabel(ylabel)
            a_.grid(alpha=0.3)
        ax[1].set_ylabel(f"best {ylabel} over NFE")
        fig.legend(*ax[0].get_legend_handles_labels(), loc="center right", fontsize=7)
        fig.suptitle(f"{group}: quality vs NFE and vs training time")
        fig.text(0.5, 0.01, stamp, ha="center", fontsize=7, color="0.3")
        fig.tight_layout(rect=(0, 0.04, 0.78, 1))
        path = os.path.join(docs, f"{group}_quality.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        made.append(path)
    for n, r in res.items():
        if r.get("grid") is not None:
            path = os.path.join(docs, f"samples_{n}.png")
            save_png(path, r.pop("grid"))
            r["grid_png"] = os.path.basename(path)
    return made


def timing_note(res):
    """How much of the command's wall was training, and what training the reused runs took."""
    walls = {now: sum(r["train"]["wall_s"] for r in res.values() if r.get("train", {}).get("trained_now") is now)
             for now in (True, False)}
    note = f", of which training {walls[True] / 60:.0f} min" if walls[True] else ""
    if walls[False]:
        note += f"; runs trained earlier were reused, training them from scratch adds {walls[False] / 60:.0f} min"
    return note


def kept(old, name):
    """The block between ``<!-- name:start -->`` and ``<!-- name:end -->`` of the previous report,
    as lines: what this script does not regenerate (``notes:GROUP`` under a group's table,
    ``notes:throughput`` with hand-run benchmarks, robustness.py's ``robustness``) survives a rerun."""
    a, b = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    return [old[old.index(a):old.index(b) + len(b)], ""] if a in old and b in old else []


def write_md(res, fl, thr, meta, out):
    rel = lambda p: os.path.relpath(p, os.path.dirname(out))  # noqa: E731
    old = open(out).read() if os.path.exists(out) else ""
    L = ["# Results: every method on one loop, on a laptop", "",
         f"Machine: {meta['machine']}. Date: {meta['date']}. Command: `{meta['command']}` "
         f"({meta['wall_min']:.1f} min{timing_note(res)}). Regenerate with that command; quality numbers "
         "are seeded and reproduce exactly, timings vary with machine load.", ""]
    for group, (key, _, title) in GROUPS.items():
        rs = {n: r for n, r in res.items() if r["run"]["group"] == group}
        if not rs:
            continue
        cols = (key,) if group == "ring" else (key, "precision", "recall")
        floor = fl.get(group)
        fl_txt = ("n/a" if floor is None else f"{floor:.4f}" if group == "ring" else
                  ", ".join(f"{k} {v:.3f}" for k, v in floor.items()))
        L += [f"## {title}", "", f"Data floor (real vs real): {fl_txt}.", "",
              "| run | config | steps x batch | train wall (s) | train img/s | NFE | " + " | ".join(cols)
              + " | samples/s |", "|" + "---|" * (7 + len(cols))]
        for n, r in rs.items():
            if not r.get("rows"):
                L.append(f"| {r['run']['label']} | `{r['run']['config']}` | | | | | {r.get('error', '')} |")
                continue
            t = r["train"]
            for i, row in enumerate(r["rows"]):
                head = (f"| {r['run']['label']} | `{r['run']['config']}"
                        f"{''.join(f' --config.{k}={v}' for k, v in r['run']['overrides'])}` | "
                        f"{t['steps']} x {t['batch']} | {t['wall_s']:.0f} | {t['train_img_per_s'] or 0:,.0f} |"
                        if i == 0 else "| | | | | |")
                L.append(head + f" {row['nfe']} | " + " | ".join(f"{row[k]:.4f}" for k in cols)
                         + f" | {row['sample_per_s']:,.0f} |")
        L.append("")
        png = os.path.join(os.path.dirname(out), "results", f"{group}_quality.png")
        if os.path.exists(png):
            L += [f"![{group} quality]({rel(png)})", ""]
        grids = [f"![{r['run']['label']}](results/{r['grid_png']})" for r in rs.values() if r.get("grid_png")]
        if grids:
            L += ["Samples (largest NFE of each run; seeds 0..):", "", " ".join(grids), ""]
        L += kept(old, f"notes:{group}")
    rl = ratio_lines(res)
    if rl:
        L += ["## Ratios", "", "| comparison | quality | speed |", "|---|---|---|", *rl, ""]
    notes = kept(old, "notes:throughput")
    if thr or notes:
        L += ["## Throughput (each script measures its own baseline in the same run)", "", *notes]
        for t in thr:
            L += [f"`{t['cmd']}` ({t['wall_s']:.0f} s{'' if t['rc'] == 0 else ', FAILED rc=%d' % t['rc']})", "",
                  "```", t["out"], "```", ""]
    L += kept(old, "robustness")  # benchmarks/robustness.py's section
    with open(out, "w") as f:
        f.write("\n".join(L))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma list of groups (ring, digits) or run names")
    p.add_argument("--root", default=os.path.join(ROOT, "checkpoints", "results"))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "RESULTS.md"))
    p.add_argument("--fresh", action="store_true", help="retrain finished runs")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--num", type=int, default=2048, help="2-D samples per evaluation")
    p.add_argument("--steps", type=int, help="cap every run's total_steps (a quick look; use another --root)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    import jax

    from genmod import config_lib

    want = set(a.only.split(",")) if a.only else None
    runs = [r for r in RUNS if not want or r.name in want or r.group in want]
    have = set(config_lib.available())
    features = Features()
    res, prev = {}, os.path.join(os.path.dirname(a.out), "results", "results.json")
    if want and os.path.exists(prev):  # a partial rerun updates the previous report's rows
        res = {k: v for k, v in json.load(open(prev))["runs"].items() if k in {r.name for r in RUNS}}
        for v in res.values():
            v.get("train", {})["trained_now"] = False
    for r in runs:
        entry = {"run": dataclasses.asdict(r)}
        res[r.name] = entry
        if r.config.split(":")[0] not in have or (r.group == "mnist" and not os.path.exists(MNIST)):
            entry["error"] = (f"config {r.config.split(':')[0]} not in this checkout" if r.group != "mnist" else
                              f"no {os.path.relpath(MNIST, ROOT)} (MNIST as npz: x_train, y_train, x_test, y_test)")
            log(f"skip {r.name}: {entry['error']}")
            continue
        log(f"train {r.name} ({r.config})")
        entry["train"] = train_run(r, a.root, a.fresh, a.steps)
        log(f"  {entry['train']}")
        if entry["train"]["status"] != "done":  # SIGTERM (preemption) or NaN stop: report nothing partial
            sys.exit(f"results.py: {r.name} stopped ({entry['train']['status']}); rerun to restart it")
        entry["rows"], entry["grid"] = evaluate(r, a.root, a.num, features)
        log("  " + "; ".join(f"nfe {x['nfe']}: " + ", ".join(f"{k} {v:.4g}" for k, v in x.items() if k != "nfe")
                             for x in entry["rows"]))
    # a partial rerun keeps the stored floors of the groups it did not evaluate: an image group's
    # floor comes from a freshly trained feature classifier, which differs across machines
    fl = json.load(open(prev)).get("floors", {}) if want and os.path.exists(prev) else {}
    now = {r.group for r in runs if res[r.name].get("rows")}
    fl_now = floors(sorted({r["run"]["group"] for r in res.values() if r.get("rows")
                            and (r["run"]["group"] in now or r["run"]["group"] not in fl)}), a.num, features)
    thr = [] if a.skip_throughput else throughput([r for r in runs if "train" in res[r.name]], a.root)
    docs = os.path.join(os.path.dirname(a.out), "results")
    os.makedirs(docs, exist_ok=True)
    dev = jax.devices()[0]
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} on "
                       f"{dev.platform} ({dev.device_kind}), load average at end {os.getloadavg()[0]:.1f}",
            "date": datetime.date.today().isoformat(),
            "command": "python benchmarks/results.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
            "wall_min": (time.perf_counter() - t0) / 60,
            "classifier_accuracy": {g: f.accuracy for g, f in features.items()}}
    with locked(os.path.join(docs, "results.json")):
        if want and os.path.exists(prev):  # merge with rows another results.py stored while this one ran
            stored, mine = json.load(open(prev)), {r.name: res[r.name] for r in runs}
            res = {k: v for k, v in stored["runs"].items() if k in {r.name for r in RUNS}}
            for v in res.values():
                v.get("train", {})["trained_now"] = False
            res.update(mine)
            fl = stored.get("floors", {})
            thr = thr or stored.get("throughput", [])
            # like the floors: a group's classifier accuracy stays until that group is rerun
            meta["classifier_accuracy"] = {**stored.get("meta", {}).get("classifier_accuracy", {}),
                                           **meta["classifier_accuracy"]}
        fl = {**fl, **fl_now}
        plots(res, docs, f"{meta['machine'].split(', load')[0]} | {meta['date']} | {meta['command']}")
        with open(os.path.join(docs, "results.json.tmp"), "w") as f:
            json.dump({"meta": meta, "floors": fl, "runs": res, "throughput": thr}, f, indent=1, default=str)
        os.replace(os.path.join(docs, "results.json.tmp"), os.path.join(docs, "results.json"))
        write_md(res, fl, thr, meta, a.out)
    log(f"wrote {a.out} ({meta['wall_min']:.1f} min)")


@contextlib.contextmanager
def locked(path):
    """An exclusive flock on PATH.lock: two benchmark processes (one per core) each read the
    stored rows and write them back in turn, so neither drops the other's (results.py's report,
    robustness.py's store)."""
    import fcntl

    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


if __name__ == "__main__":
    main()
