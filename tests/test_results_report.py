"""benchmarks/results.py end to end on one short ring run: train, evaluate, report."""
import json
import os
import sys

import numpy as np
import pytest

from genmod.sample import Sampler

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import results  # noqa: E402


@pytest.mark.slow  # the benchmark's plumbing (a training, a report, a rerun): not a method's behaviour
def test_one_run_report(tmp_path):
    out = tmp_path / "docs" / "RESULTS.md"
    argv = ["--only", "edm", "--steps", "20", "--num", "256", "--skip-throughput", "--root", str(tmp_path / "runs"),
            "--out", str(out)]
    results.main(argv)
    rep = json.load(open(tmp_path / "docs" / "results" / "results.json"))
    rows = rep["runs"]["edm"]["rows"]
    assert [r["nfe"] for r in rows] == list(results.RUNS[0].nfes)
    assert all(r["energy"] > rep["floors"]["ring"] > 0 for r in rows)  # real data is the best any row can do
    assert rep["runs"]["edm"]["train"]["steps"] == 20 and rep["runs"]["edm"]["train"]["trained_now"]
    md = out.read_text()
    assert "| EDM (Heun) | `edm_toy` | 20 x 512 |" in md and "of which training" in md
    assert md.count("| | | | | |") == len(rows) - 1 and (tmp_path / "docs" / "results" / "ring_quality.png").exists()
    # a rerun reuses the finished run: same seeded numbers, its training reported as reused
    results.main(argv)
    rep2 = json.load(open(tmp_path / "docs" / "results" / "results.json"))
    assert [r["energy"] for r in rep2["runs"]["edm"]["rows"]] == [r["energy"] for r in rows]
    assert "runs trained earlier were reused" in out.read_text()
    # the ahead-of-time sampler the benchmark times draws exactly what the plain one does
    s = Sampler(str(tmp_path / "runs" / "edm"), nfe=5)
    np.testing.assert_array_equal(s.compiled(np.arange(64))(), s(np.arange(64)))


@pytest.mark.slow  # three benchmark invocations and a results run: the benchmark's plumbing, not a method
def test_robustness_report_and_results_keep_its_section(tmp_path):
    import robustness

    out = tmp_path / "docs" / "RESULTS.md"
    argv = ["--methods", "cd", "--mixtures", "random:1", "--seeds", "0", "--steps", "40", "--root",
            str(tmp_path / "rob"), "--out", str(out)]
    robustness.main(argv)
    ev = json.load(open(tmp_path / "rob" / "robustness.json"))["runs"]["cd/random_1/s0"]
    assert [r["nfe"] for r in ev["rows"]] == [1, 2] and len(ev["rows"][0]["recall"]) == 3  # random:1 has 3 modes
    assert 0 < ev["floor"] < ev["heun35"] < ev["rows"][0]["energy"]  # 40 steps: far from the exact sampler
    assert len(ev["last5"]) == 5 and ev["last5"][-1] == ev["rows"][0]["energy"]  # the final checkpoint is the last
    md = out.read_text()
    assert robustness.START in md and "| cd | 1 | 1 |" in md and "| cd/random_1/s0 |" in md
    # a finished run is reused: the second call trains nothing and reports the same numbers
    robustness.main(argv)
    assert json.load(open(tmp_path / "rob" / "robustness.json"))["runs"]["cd/random_1/s0"] == ev
    # ... until its config changes: then it is retrained (here 30 steps: other numbers)
    robustness.main(argv[:-6] + ["--steps", "30", "--root", str(tmp_path / "rob"), "--out", str(out)])
    ev30 = json.load(open(tmp_path / "rob" / "robustness.json"))["runs"]["cd/random_1/s0"]
    assert ev30["config_sha"] != ev["config_sha"] and ev30["rows"][0]["energy"] != ev["rows"][0]["energy"]
    # results.py rewrites RESULTS.md but keeps the robustness section
    results.main(["--only", "edm", "--steps", "20", "--num", "256", "--skip-throughput", "--root",
                  str(tmp_path / "runs"), "--out", str(out)])
    md = out.read_text()
    assert "| EDM (Heun) |" in md and md.count(robustness.START) == 1 and "| cd/random_1/s0 |" in md


def test_robustness_reuses_a_stored_run_across_new_no_op_keys(tmp_path):
    """A stored evaluation stays current when today's config only adds keys it leaves at their
    defaults (absent = the old behaviour = the default), from the config kept in the entry, with
    no workdir; a new key set away from its default, or a changed value, retrains."""
    import robustness

    m = robustness.METHODS[[x.name for x in robustness.METHODS].index("cd")]
    run = robustness.run_of(m, "random:1", 0, 400)
    now = json.loads(results.load_config(run, str(tmp_path)).to_json())
    old = json.loads(json.dumps(now))
    del old["cm"]["huber_c"]  # a key the run predates, at its default in cd_toy
    assert robustness.reusable({"config_sha": "0" * 16, "config": old}, run, str(tmp_path))
    del old["cm"]["cd_substeps"]  # cd_toy sets it to 2: a run without it ran with the default, 1
    assert not robustness.reusable({"config_sha": "0" * 16, "config": old}, run, str(tmp_path))
    old["cm"]["cd_substeps"] = now["cm"]["cd_substeps"]
    old["cm"]["cd_span"] = 3  # a setting that differs
    assert not robustness.reusable({"config_sha": "0" * 16, "config": old}, run, str(tmp_path))
    assert not robustness.reusable({"config_sha": "0" * 16}, run, str(tmp_path))  # nothing to compare
    sha = robustness.fingerprint(run, str(tmp_path))
    assert robustness.reusable({"config_sha": sha}, run, str(tmp_path))


def test_a_rerun_keeps_the_hand_written_blocks_where_they_were(tmp_path):
    # docs/RESULTS.md carries text results.py does not regenerate (hand-run throughput benchmarks,
    # a note under a group's table); before, every partial rerun dropped it
    out = tmp_path / "RESULTS.md"
    row = {"nfe": 1, "energy": 0.01, "sample_per_s": 1.0}
    res = {"edm": {"run": {**vars(results.RUNS[0]), "group": "ring"}, "rows": [row],
                   "train": {"steps": 1, "batch": 1, "wall_s": 1.0, "train_img_per_s": 1.0, "trained_now": True}}}
    meta = dict(machine="m", date="d", command="c", wall_min=0.0)
    notes = {n: f"<!-- {n}:start -->\n{n} text\n<!-- {n}:end -->" for n in ("notes:ring", "notes:throughput")}
    out.write_text("old table\n" + "\n".join(notes.values()) + "\n<!-- robustness:start -->\nrob\n<!-- robustness:end -->")
    results.write_md(res, {"ring": 0.001}, [], meta, str(out))
    md = out.read_text()
    assert "old table" not in md and all(md.count(v) == 1 for v in notes.values()) and md.count("\nrob\n") == 1
    assert md.index("| EDM (Heun) |") < md.index(notes["notes:ring"]) < md.index("## Throughput") \
        < md.index(notes["notes:throughput"]) < md.index("<!-- robustness:start -->")


def test_robustness_final_vs_best_is_the_plain_ratio_even_under_the_floor():
    import robustness

    ev = {"floor": 0.5, "last5": [0.30, 0.34, 0.37, 0.32, 0.37], "heun35": 1.0}  # all five under the floor
    assert robustness.final_x_best(ev) == pytest.approx(0.37 / 0.30)
    row = {"energy": 0.37, "recall": [True], "off_mode": 0.0}
    assert not robustness.passes(row, ev)["final"] and robustness.passes(row, {**ev, "last5": [0.32] * 5})["final"]


def test_partial_reruns_side_by_side_keep_each_others_rows(tmp_path, monkeypatch):
    """Two ``results.py --only`` runs, one per core: the one that finishes last must not write back
    the report it read at its start (that dropped a finished sCD digits row once)."""
    real = json.load(open(os.path.join(os.path.dirname(results.__file__), "..", "docs", "results", "results.json")))
    real = real["runs"]
    out, store = tmp_path / "docs" / "RESULTS.md", tmp_path / "docs" / "results" / "results.json"
    store.parent.mkdir(parents=True)
    store.write_text(json.dumps({"runs": {}, "floors": {}}))  # the report as both start

    def train_run(run, root, fresh=False, steps=None):  # meanwhile the other one stores its edm row
        store.write_text(json.dumps({"runs": {"edm": real["edm"]}, "floors": {}, "throughput": []}))
        return dict(real["fm"]["train"])

    monkeypatch.setattr(results, "train_run", train_run)
    monkeypatch.setattr(results, "evaluate", lambda run, root, n, features: (real["fm"]["rows"], None))
    results.main(["--only", "fm", "--skip-throughput", "--num", "256", "--root", str(tmp_path / "runs"),
                  "--out", str(out)])
    runs = json.load(open(store))["runs"]
    assert set(runs) == {"edm", "fm"} and runs["edm"]["rows"] == real["edm"]["rows"]
    assert runs["fm"]["rows"] == real["fm"]["rows"]
    md = out.read_text()
    assert "| EDM (Heun) | `edm_toy` |" in md and "| Flow matching (Euler) | `fm_toy` |" in md
