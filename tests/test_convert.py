"""``python -m genmod.convert edm``: NVlabs/edm pickles imported without running their code.

The fixtures (../shared/fixtures/edm, README there) are tiny networks of all five kinds pickled
by EDM's own code, with inputs and EDM's float32 outputs: the imported teacher must reproduce
``denoised`` to 1e-5 x max|denoised|.
"""
import io
import json
import os
import pickle
import pickletools
import subprocess
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from genmod import convert, edm_pickle, teacher
from tests.helpers import assert_trees_equal, raw_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "..", "shared", "fixtures", "edm")
PEERS = os.path.join(REPO, "..", "shared", "peers", "edm")
NAMES = ["edm_ddpmpp_cond", "edm_ncsnpp_uncond", "vp_ddpmpp_uncond", "ve_ncsnpp_uncond", "edm_adm_cond"]
KIND = {"edm_ddpmpp_cond": ("edm", "unet"), "edm_ncsnpp_uncond": ("edm", "unet"), "vp_ddpmpp_uncond": ("vp", "unet"),
        "ve_ncsnpp_uncond": ("ve", "unet"), "edm_adm_cond": ("edm", "adm")}

pytestmark = pytest.mark.skipif(not os.path.isdir(FIXTURES), reason="needs ../shared/fixtures/edm")
_converted = {}


def _pkl(name):
    return os.path.join(FIXTURES, name + ".pkl")


def converted(name, tmp_path_factory):
    """The fixture's workdir, converted once per test process."""
    if name not in _converted:
        wd = str(tmp_path_factory.mktemp("convert") / name)
        assert convert.main(["edm", _pkl(name), "--workdir", wd]) == 0
        _converted[name] = wd
    return _converted[name]


@pytest.mark.parametrize("name", NAMES)
def test_imported_teacher_reproduces_edm(name, tmp_path_factory):
    wd = converted(name, tmp_path_factory)
    data = ml_collections.ConfigDict(dict(shape=(8, 8, 3)))
    t = teacher.load(ml_collections.ConfigDict(dict(workdir=wd, step=0)), data)  # what distillation loads
    assert (t.config.edm.get("precond", "edm"), t.config.net.arch) == KIND[name]
    io_ = np.load(os.path.join(FIXTURES, name + ".io.npz"))
    labels = jnp.asarray(io_["class_labels"]) if io_["class_labels"].size else None
    out = t.denoise(t.params, jnp.asarray(io_["x"].transpose(0, 2, 3, 1)), jnp.asarray(io_["sigma"]), labels)
    ref = io_["denoised"]
    err = np.abs(np.asarray(out).transpose(0, 3, 1, 2) - ref).max()
    assert err <= 1e-5 * np.abs(ref).max(), (name, err, np.abs(ref).max())


def _with_module_src(blob: bytes, src: str) -> bytes:
    """The pickle with its embedded network source replaced (same byte length, so the pickle's
    frames stay valid)."""
    for op, arg, pos in pickletools.genops(blob):
        if op.name == "BINUNICODE" and "persistent_class" in arg:  # EDM's networks.py, memoised once
            old = arg.encode()
            new = src.encode()
            assert len(new) < len(old)
            start = pos + 5  # opcode + 4-byte length
            assert blob[start:start + len(old)] == old
            return blob[:start] + new.ljust(len(old), b" ") + blob[start + len(old):]
    raise AssertionError("no embedded module source found")


def test_embedded_source_is_never_run(tmp_path, tmp_path_factory, monkeypatch):
    marker = tmp_path / "ran.txt"
    monkeypatch.delenv("GENMOD_TEST_PWNED", raising=False)
    src = f"import os\nos.environ['GENMOD_TEST_PWNED'] = '1'\nopen({str(marker)!r}, 'w').write('ran')\n"
    evil = tmp_path / "evil.pkl"
    with open(_pkl("edm_ddpmpp_cond"), "rb") as f:
        evil.write_bytes(_with_module_src(f.read(), src))

    # Control: a plain pickle.load with EDM's code on the path runs the embedded source.
    if os.path.isdir(PEERS):
        r = subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))",
                            str(evil)], env={**os.environ, "PYTHONPATH": PEERS}, capture_output=True, timeout=120)
        assert r.returncode != 0 and marker.exists()  # it ran (then failed: no EDMPrecond in that source)
        marker.unlink()

    wd = tmp_path / "wd"
    before = set(sys.modules)  # another test in this worker may have imported EDM's code itself
    assert convert.main(["edm", str(evil), "--workdir", str(wd)]) == 0
    assert not marker.exists() and "GENMOD_TEST_PWNED" not in os.environ
    assert not any(m == "torch_utils" or m.startswith(("torch_utils.", "_imported_module_")) for m in set(sys.modules) - before)
    # ... and it is the same network as the untouched file.
    assert_trees_equal(raw_state(wd)["params"], raw_state(converted("edm_ddpmpp_cond", tmp_path_factory))["params"])


class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def test_foreign_globals_are_refused(tmp_path, capsys):
    marker = tmp_path / "ran.txt"
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"ema": _Call(os.system, f"touch {marker}")}))
    wd = tmp_path / "wd"
    assert convert.main(["edm", str(bad), "--workdir", str(wd)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "refused pickle global" in err and "system" in err
    assert not marker.exists() and not wd.exists()
    # A pickle of something else than a network.
    bad.write_bytes(pickle.dumps({"ema": [1, 2]}))
    assert convert.main(["edm", str(bad), "--workdir", str(wd)]) == 2
    assert "no EDM network" in capsys.readouterr().err
    # Truncated file.
    with open(_pkl("ve_ncsnpp_uncond"), "rb") as f:
        bad.write_bytes(f.read()[:5000])
    assert convert.main(["edm", str(bad), "--workdir", str(wd)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and err.count("\n") == 0 and not wd.exists()


def test_state_dict_with_arch(tmp_path, tmp_path_factory, capsys):
    """A plain state dict (VE NCSN++ here) + --arch gives the same workdir as the pickle."""
    import torch

    net = edm_pickle.load_pickle(_pkl("ve_ncsnpp_uncond"))
    sd = tmp_path / "sd.pt"
    torch.save({f"model.{k}": torch.from_numpy(v) for k, v in net.state.items()}, sd)
    wd = tmp_path / "wd"
    kw = json.dumps(dict(model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], dropout=0.0))
    assert convert.main(["edm", str(sd), "--workdir", str(wd)]) == 2  # no --arch: a clear error
    assert "--arch" in capsys.readouterr().err
    assert convert.main(["edm", str(sd), "--workdir", str(wd), "--arch", "ncsnpp", "--precond", "ve",
                         "--arch_kwargs", kw]) == 0
    ref = converted("ve_ncsnpp_uncond", tmp_path_factory)
    assert_trees_equal(raw_state(wd)["params"], raw_state(ref)["params"])
    cfg = [json.load(open(os.path.join(d, "config.json"))) for d in (wd, ref)]
    assert cfg[0]["net"] == cfg[1]["net"] and cfg[0]["edm"] == cfg[1]["edm"]
    # The wrong architecture (here the full-size preset) is refused with what does not fit.
    assert convert.main(["edm", str(sd), "--workdir", str(tmp_path / "wd2"), "--arch", "ncsnpp"]) == 2
    err = capsys.readouterr().err
    assert "do not fit" in err and not (tmp_path / "wd2").exists()


def test_existing_workdir_is_not_overwritten(tmp_path, capsys):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "keep.txt").write_text("x")
    assert convert.main(["edm", _pkl("edm_adm_cond"), "--workdir", str(wd)]) == 2
    assert "not empty" in capsys.readouterr().err and os.listdir(wd) == ["keep.txt"]


def test_adm_imagenet64_parameter_count():
    """EDM's ImageNet-64 ADM: 295,899,267 parameters with 1000 classes (counted once from
    NVlabs/edm's DhariwalUNet with torch 2.13, sum of p.numel())."""
    import jax

    from genmod.nets.adm import DhariwalUNet, adm_imagenet64

    net = DhariwalUNet(img_resolution=64, in_channels=3, out_channels=3, label_dim=1000, **adm_imagenet64())
    shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)), jnp.zeros((1,)),
                            jnp.zeros((1, 1000)))
    assert set(shapes) == {"params"}
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == 295_899_267


def test_restricted_unpickler_keeps_records_inert():
    """The reader gives records (class name + state), never objects of the pickled classes."""
    obj = edm_pickle.read_pickle(_pkl("edm_adm_cond"))
    ema = obj["ema"]
    assert isinstance(ema, edm_pickle.Persistent) and ema.class_name == "EDMPrecond"
    assert "module_src" not in vars(ema)
    assert isinstance(ema.state["_modules"]["model"].state["_modules"]["map_layer0"].state["_parameters"]["weight"],
                      np.ndarray)
    with pytest.raises(edm_pickle.EdmPickleError, match="refused pickle global builtins.eval"):
        edm_pickle.RestrictedUnpickler(io.BytesIO(pickle.dumps(_Call(eval, "1")))).load()


# -- end to end: distillation smoke runs from an imported teacher ------------------------------
def student_config(spec, teacher_wd):
    """``spec`` (a distillation smoke config) with the teacher ``teacher_wd``: the student's
    network is the teacher's (its config.json's ``net``), the data random images of its shape
    and classes."""
    from genmod import config_lib

    t = json.load(open(os.path.join(teacher_wd, "config.json")))
    c = config_lib.load(spec)
    with c.unlocked():
        c.net = ml_collections.ConfigDict(t["net"])
        c.data.source, c.data.shape = "synthetic:" + "x".join(map(str, t["data"]["shape"])), tuple(t["data"]["shape"])
        c.data.num_classes = t["data"]["num_classes"]
        c.teacher.workdir, c.teacher.step = teacher_wd, 0
        c.sample_every = 0
    return c


def test_dry_run_refuses_a_student_network_other_than_the_teacher(tmp_path, tmp_path_factory, capsys):
    from genmod import launch

    wd = converted("edm_ddpmpp_cond", tmp_path_factory)
    argv = ["--config", "dmd2_cifar10:smoke", "--workdir", str(tmp_path / "s"), "--dry_run",
            f"--config.teacher.workdir={wd}", "--config.data.source=synthetic:8x8x3", "--config.data.shape=(8,8,3)"]
    assert launch.main(argv) == 2  # the smoke preset's tiny U-Net is not the teacher's network
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "error: dmd2.init_from_teacher: the teacher's network differs from config.net"
    assert not os.path.exists(tmp_path / "s")


@pytest.mark.slow
@pytest.mark.parametrize("spec,name,nets", [("dmd2_cifar10:smoke", "edm_ddpmpp_cond", ("gen", "fake")),
                                            ("cd_cifar10:smoke", "edm_ncsnpp_uncond", ("net",))])
def test_distillation_smoke_run_from_an_imported_teacher(tmp_path, tmp_path_factory, spec, name, nets):
    """DMD2 (class-conditional DDPM++) and CD (NCSN++) from converted EDM pickles: the student
    starts as the teacher's weights, trains 4 steps, and samples finite images."""
    import jax

    from genmod import sample, train
    from genmod.method import get_method

    teacher_wd = converted(name, tmp_path_factory)
    c = student_config(spec, teacher_wd)
    teacher_params = raw_state(teacher_wd)["ema"]["net"]
    m = get_method(c)  # what the loop builds (the teacher loaded read-only), and its step-0 state
    example = {"x": np.zeros((1, 8, 8, 3), np.float32), "label": np.zeros((1,), np.int32)}
    state0 = jax.jit(m.init)(jax.random.PRNGKey(c.seed), example)
    for n in nets:
        assert_trees_equal(state0.params[n], teacher_params)
    wd = tmp_path / "student"
    log = []
    assert train.train(c, str(wd), log=log.append) == "done"
    n = train.fmt_count(sum(x.size for x in jax.tree.leaves(teacher_params)))  # 190K
    (line,) = [x for x in log if x.startswith("[main] parameters: ")]
    assert all(f"{k} {n}," in line for k in nets) and line.endswith(f", teacher {n} (frozen)"), line
    rows = [json.loads(line) for line in open(wd / "metrics.jsonl")]
    assert rows[-1]["step"] == 4 and all(np.isfinite(v) for r in rows for v in r.values())
    assert sample.main(["--workdir", str(wd), "--num", "4", "--out", str(tmp_path / "s.npz")]) == 0  # 2 if not finite
    assert np.load(tmp_path / "s.npz")["samples"].shape == (4, 8, 8, 3)
