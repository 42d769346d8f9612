"""Shared test utilities."""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from genmod import config_lib


def config(name="edm_toy", **overrides):
    c = config_lib.load(name)
    with c.unlocked():
        for k, v in overrides.items():
            node = c
            *path, leaf = k.split("__")
            for p in path:
                node = node[p]
            node[leaf] = v
    return c


def raw_state(workdir, stage="main", step=None):
    """A checkpoint's state as saved (numpy leaves), without a target."""
    mngr = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "ckpt", stage),
                                 item_handlers={"state": ocp.StandardCheckpointHandler(),
                                                "meta": ocp.JsonCheckpointHandler()})
    step = mngr.latest_step() if step is None else step
    dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # any saving topology -> one device
    meta = mngr.item_metadata(step)["state"]
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=dev), meta)
    r = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    mngr.close()
    return r.state


def assert_trees_equal(a, b, atol=0.0):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and len(la) > 0
    for x, y in zip(la, lb):
        if atol == 0:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def trace_config(c, workdir):
    """A smoke run's wiring checks without XLA compilation (seconds instead of a minute): the
    start-up checks of ``train.dry_run``, then every stage's init, every rule its schedule uses
    and the sampler traced with ``jax.eval_shape``; each rule must return a state of the same
    structure, shapes and dtypes, and scalar metrics; later stages get zero states of the
    earlier ones. Returns {stage: rule names scheduled}."""
    import jax.numpy as jnp

    from genmod import method, train

    train.dry_run(c, workdir, log=lambda *_: None)
    shape, B = tuple(c.data.shape), c.batch_size
    batch = {"x": jnp.zeros((B,) + shape)}
    if c.data.num_classes:
        batch["label"] = jnp.zeros((B,), jnp.int32)
    keys = train.seed_keys(range(4))
    prior, used = {}, {}
    for stage in method.get_method(c).stages():
        m = stage.make(prior)
        state = jax.eval_shape(lambda r: m.init(r, batch), jax.random.PRNGKey(c.seed))  # noqa: B023
        rules = m.rules()
        used[stage.name] = sorted({m.schedule(s) for s in range(stage.num_steps)})
        assert set(used[stage.name]) <= set(rules), (stage.name, used[stage.name], list(rules))
        for name in used[stage.name]:
            new, metrics = jax.eval_shape(rules[name], state, batch, m.frozen)
            assert jax.tree.structure(new) == jax.tree.structure(state), (stage.name, name)
            for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state)):
                assert (a.shape, a.dtype) == (b.shape, b.dtype), (stage.name, name, a, b)
            assert all(v.shape == () for v in jax.tree.leaves(metrics)), (stage.name, name, metrics)
        x = jax.eval_shape(m.sample, m.sample_params(state), keys, m.frozen)
        assert x.shape == (4,) + shape, (stage.name, x.shape)
        prior[stage.name] = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state)
    return used


def rk4(velocity, x, t, t_end, n):
    """x at t_end from x at t (per-sample arrays t, t_end) by n classic RK4 steps of dx/dt = velocity(x, t)."""
    import jax.numpy as jnp

    h = (t_end - t) / n

    def step(x, i):
        s, hh = t + i * h, h[:, None]
        k1 = velocity(x, s)
        k2 = velocity(x + hh / 2 * k1, s + h / 2)
        k3 = velocity(x + hh / 2 * k2, s + h / 2)
        k4 = velocity(x + hh * k3, s + h)
        return x + hh / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    return jax.lax.scan(step, x, jnp.arange(n))[0]
