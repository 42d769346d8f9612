"""Every config loads, is locked, documents its command, and runs with ``:smoke``."""
import os

import pytest

from genmod import config_lib, train

from tests import helpers

NAMES = config_lib.available()
# Smoke runs whose compile takes most of a minute or more (distillation: three networks, two
# rules; CDRL: two networks, Langevin chains): in the slow set (`python -m pytest tests -m slow`).
# One real run per method family left the fast set: the CIFAR-10 DisBack stages with dropout,
# the digits DMD2 student and CDRL (DMD2 on a full-size converted teacher: tests/test_convert.py).
SLOW_SMOKE = {"disback_cifar10", "dmd2_digits", "cdrl_digits"}
# The rest compile the same networks and methods as runs elsewhere (the fast set's smoke runs and
# method tests, the slow runs above): traced, not compiled (tests/helpers.trace_config: every
# stage's init, scheduled rules and sampler, shapes and dtypes checked), in seconds each.
TRACED = {"dmd2_imagenet64", "fdistill_imagenet64", "disback_imagenet64", "dmd2_cifar10", "fdistill_cifar10", "cdrl_cifar10",
          "fm_cifar10", "ct_cifar10", "crossflow_t2i", "edm_cifar10", "cd_cifar10", "crossflow_sr",
          "fdistill_toy", "drl_toy", "meanflow_cifar10", "scm_cifar10",
          # the U-Net + JVP paths of meanflow/scm_digits (their toys are smoke-run in the fast set)
          "meanflow_digits", "scm_digits"}
# Smoke runs the fast set already makes end to end through the CLI: not run twice.
COVERED = {"quickstart": "tests/test_launch.py::test_quickstart_smoke_end_to_end",
           "cm_cifar10": "tests/test_data.py::test_cm_cifar10_smoke_trains_from_official_archive"}


def test_catalogue():
    assert {"quickstart", "edm_cifar10", "fm_cifar10", "edm_toy", "fm_toy"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_config_documents_its_command(name):
    src = open(config_lib.config_path(name)).read()
    assert f"python -m genmod.launch --config {name}" in src


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_SMOKE else n
                                  for n in NAMES if n not in COVERED and n not in TRACED])
def test_smoke_runs(tmp_path, name):
    c = config_lib.load(f"{name}:smoke")
    assert c.total_steps <= 10
    with pytest.raises(AttributeError):
        c.not_a_key = 1  # locked
    assert train.train(c, str(tmp_path / name), log=lambda *_: None) == "done"
    assert os.path.isdir(tmp_path / name / "ckpt")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRACED & set(NAMES)))
def test_smoke_configs_trace(tmp_path, name):
    c = config_lib.load(f"{name}:smoke")
    assert c.total_steps <= 10
    used = helpers.trace_config(c, str(tmp_path / name))
    assert all(used.values()) and not (tmp_path / name).exists()  # nothing written


def test_published_settings():
    e = config_lib.load("edm_cifar10")
    assert (e.batch_size, e.optim.net.lr, e.net.dropout, e.ema.halflife_img) == (512, 1e-3, 0.13, 500_000.0)
    assert (e.edm.P_mean, e.edm.P_std, e.sample.nfe) == (-1.2, 1.2, 35)
    assert e.net.model_channels == 128 and tuple(e.net.channel_mult) == (2, 2, 2) and e.net.num_blocks == 4


def test_ict_cifar10_settings():
    c = config_lib.load("cm_cifar10")
    assert (c.cm.mode, c.batch_size, c.total_steps, c.cm.s0, c.cm.s1) == ("ict", 1024, 400_000, 10, 1280)
    assert (c.cm.P_mean, c.cm.P_std, c.optim.net.name, c.optim.net.lr) == (-1.1, 2.0, "radam", 1e-4)
    assert c.net.embedding_type == "fourier" and tuple(c.net.resample_filter) == (1, 3, 3, 1)
    assert c.net.encoder_type == "residual" and c.net.dropout == 0.3
    assert abs(0.5 ** (c.batch_size / c.ema.halflife_img) - 0.99993) < 1e-9
