"""The shared loop: resume bit-exactness, sharding equivalence, multi-net multi-stage
methods, and that EDM / flow matching actually learn a 2-D mixture."""
import numpy as np
import pytest

from genmod import sample, toy, train
from tests import helpers

SMALL = dict(batch_size=32, log_every=2, ckpt_every=100, sample_every=0, num_preview=0)


def test_resume_is_bit_exact(tmp_path):
    c = helpers.config("edm_toy", total_steps=4, **SMALL)
    assert train.train(c, str(tmp_path / "straight"), log=lambda *_: None) == "done"
    assert train.train(c, str(tmp_path / "split"), stop_after=2, log=lambda *_: None) == "preempted"
    assert helpers.raw_state(tmp_path / "split")["step"] == 2
    assert train.train(c, str(tmp_path / "split"), log=lambda *_: None) == "done"
    a, b = helpers.raw_state(tmp_path / "straight"), helpers.raw_state(tmp_path / "split")
    assert int(a["step"]) == 4
    helpers.assert_trees_equal(a, b)  # params, EMA, Adam moments, counts: bitwise


def test_two_network_two_stage_method_resumes_across_stage_boundary(tmp_path):
    c = helpers.config("edm_toy", method="tests.dummy_method", total_steps=6, **SMALL)
    with c.unlocked():
        c.stage_a_steps = 3
    log = []
    assert train.train(c, str(tmp_path / "straight"), log=log.append) == "done"
    for stop in (2, 2):  # stops at a:2, then a:3 + b:1 (crosses the boundary), then finishes
        assert train.train(c, str(tmp_path / "split"), stop_after=stop, log=lambda *_: None) == "preempted"
    assert int(helpers.raw_state(tmp_path / "split", "b")["step"]) == 1
    assert train.train(c, str(tmp_path / "split"), log=lambda *_: None) == "done"
    for stage in ("a", "b"):
        helpers.assert_trees_equal(helpers.raw_state(tmp_path / "straight", stage),
                                   helpers.raw_state(tmp_path / "split", stage))
    # k:1 schedule: gen ran at steps 0 (of 0,1,2), critic at 1 and 2; each rule touched only its net
    a = helpers.raw_state(tmp_path / "straight", "a")
    assert int(a["opt"]["gen"]["inner_state"][0]["count"]) == 1  # Adam's update count
    assert int(a["opt"]["critic"]["inner_state"][0]["count"]) == 2
    # re-running a finished run trains nothing and says so
    log.clear()
    assert train.train(c, str(tmp_path / "straight"), log=log.append) == "done"
    assert [line for line in log if "complete" in line] == ["[a] complete at step 3", "[b] complete at step 3"]
    assert not any("compiling" in line or "step 1" in line for line in log)  # the banner's lines aside


@pytest.mark.parametrize("mesh", [{"data": 4}, {"data": 2, "fsdp": 2}])
def test_sharded_step_equals_one_device(tmp_path, mesh):
    c1 = helpers.config("edm_toy", total_steps=3, mesh={"data": 1}, **SMALL)
    c4 = helpers.config("edm_toy", total_steps=3, mesh=mesh, **SMALL)
    train.train(c1, str(tmp_path / "one"), log=lambda *_: None)
    train.train(c4, str(tmp_path / "four"), log=lambda *_: None)
    helpers.assert_trees_equal(helpers.raw_state(tmp_path / "one")["params"],
                               helpers.raw_state(tmp_path / "four")["params"], atol=1e-5)


@pytest.mark.parametrize("name", ["edm_toy", "fm_toy"])
def test_training_learns_the_mixture(tmp_path, name):
    """Energy distance of 35-NFE samples: trained vs the untrained (step-0) model."""
    c = helpers.config(name, total_steps=600, batch_size=256, log_every=300, ckpt_every=600,
                       sample_every=0, num_preview=0, keep=5, ema__halflife_img=20_000.0,
                       mesh={"data": 1})
    with c.unlocked():
        c.optim.net.warmup_steps = 50
    wd = str(tmp_path / name)
    train.train(c, wd, stop_after=1, log=lambda *_: None)  # step-1 checkpoint: the near-untrained baseline
    train.train(c, wd, log=lambda *_: None)
    ref = toy.GaussianMixture.ring().sample_np(123, 1000)[0]
    seeds = np.arange(1000)
    untrained = toy.energy_distance(sample.Sampler(wd, step=1)(seeds), ref)
    trained = toy.energy_distance(sample.Sampler(wd)(seeds), ref)
    print(f"{name}: energy distance untrained {untrained:.4f} trained {trained:.4f}")
    assert trained < 0.01 and trained < untrained / 8, (trained, untrained)


def test_cooldown_decays_lr_linearly_to_zero_and_then_freezes_the_net():
    """optim.<net>.cooldown_frac: warm-up, plateau, then a linear decay to 0 over the last fraction
    of the updates the method gives the net; the last update leaves the parameters unchanged. DMD2
    counts only its generator's updates (TTUR 1: every second step)."""
    import jax.numpy as jnp
    import ml_collections
    import optax

    from genmod import config_lib, method
    from genmod.methods import dmd2

    cfg = ml_collections.ConfigDict(dict(lr=0.5, warmup_steps=4, cooldown_frac=0.4))
    tx, lr = method.make_optimizer(cfg, 8, total_updates=20)
    assert [float(lr(i)) for i in (0, 2, 4, 11, 12, 16, 20)] == [0.0, 0.25, 0.5, 0.5, 0.5, 0.25, 0.0]
    p = {"w": jnp.ones(3)}
    opt = tx.init(p)
    for _ in range(21):
        u, opt = tx.update({"w": jnp.ones(3)}, opt, p)
        p_new = optax.apply_updates(p, u)
        moved, p = bool(jnp.any(p_new["w"] != p["w"])), p_new
    assert not moved  # update 21 is past the cool-down
    with pytest.raises(ValueError, match="cooldown_frac"):
        method.make_optimizer(cfg, 8)  # a method that does not count its updates cannot cool down
    c = config_lib.load("dmd2_toy")
    c.optim.gen.cooldown_frac = 1.0
    with pytest.raises(config_lib.ConfigError, match="cooldown_frac"):
        config_lib.validate(c)
    c.optim.gen.cooldown_frac, c.total_steps, c.dmd2.ttur = 0.5, 400, 1
    gen_lr = dmd2.Method(c).lrs["gen"]
    lr0 = c.optim.gen.lr
    assert [float(gen_lr(i)) for i in (99, 100, 150, 200)] == pytest.approx([lr0, lr0, lr0 / 2, 0.0], rel=1e-6)
