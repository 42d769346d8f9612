"""Orbax wrapper: one CheckpointManager per stage with two named items, ``state`` (the
TrainState, restored into a sharded target for bit-exact resume) and ``meta`` (JSON)."""
from __future__ import annotations

import os
import time

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """No usable checkpoint (one clear line)."""


class Checkpoints:
    def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True):
        self.dir = os.path.abspath(directory)
        self.mngr = ocp.CheckpointManager(
            self.dir,
            item_names=("state", "meta"),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                 enable_async_checkpointing=async_save),
        )

    def latest(self):
        return self.mngr.latest_step()

    def all_steps(self):
        return list(self.mngr.all_steps())

    def save(self, step: int, state, meta: dict, force: bool = False):
        return self.mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)

    def meta(self, step=None):
        step = self.latest() if step is None else step
        return self.mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def restore(self, abstract_state, step=None):
        """Restore into ``abstract_state`` (ShapeDtypeStructs with shardings): exact dtypes,
        optax namedtuples and shardings come back as they were saved."""
        step = self.latest() if step is None else step
        r = self.mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return r.state, r.meta

    def restore_latest_good(self, abstract_state, warn=print):
        """Restore the newest readable checkpoint. An unreadable one (truncated, corrupt) is
        moved aside to ``corrupt_<step>_<time>`` (kept, never deleted) with a warning, and the
        previous one is tried."""
        for step in sorted(self.all_steps(), reverse=True):
            try:
                return self.restore(abstract_state, step)
            except Exception as e:  # orbax/tensorstore raise many types for damaged files
                warn(f"warning: checkpoint {self.dir}/{step} is unreadable ({type(e).__name__}: "
                     f"{str(e).splitlines()[0][:160] if str(e) else ''}); falling back to the previous one")
                if jax.process_index() == 0:
                    os.replace(os.path.join(self.dir, str(step)),
                               os.path.join(self.dir, f"corrupt_{step}_{int(time.time())}"))
                self.mngr.reload()
        raise CheckpointError(f"no readable checkpoint in {self.dir}")

    def wait(self):
        self.mngr.wait_until_finished()

    def close(self):
        self.mngr.wait_until_finished()
        self.mngr.close()


def abstract_with_shardings(abstract, shardings):
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
