"""Test-only: EDM whose batch turns to NaN at ``config.nan_steps`` (injected bad steps)."""
import jax.numpy as jnp

from genmod.methods import edm


class Method(edm.Method):
    def train_step(self, state, batch, frozen):
        bad = jnp.isin(state.step, jnp.asarray(self.config.nan_steps))
        return super().train_step(state, {**batch, "x": jnp.where(bad, jnp.nan, batch["x"])}, frozen)
