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
