"""Metric accumulation over a logging interval with ``clu.metrics`` (host side)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics


class Std(clu_metrics.Std):
    """clu's Std calls ``jnp.clip(a_min=...)``, which jax 0.10 removed; same maths here."""

    def compute(self):
        count = jnp.maximum(self.count, 1)
        var = self.sum_of_squares / count - (self.total / count) ** 2
        return jnp.sqrt(jnp.maximum(var, 0.0))


def summarize(history: list[dict]) -> dict:
    """Mean of each metric over the steps that reported it (``*/skipped``: the count;
    ``*_streak``: the max), and
    the std across steps of each loss."""
    from genmod.sharding import to_host

    host = jax.tree.map(to_host, history)
    keys = sorted({k for h in host for k in h})
    out = {}
    for k in keys:
        vals = jnp.asarray(np.array([h[k] for h in host if k in h], np.float32))
        if k.endswith("skipped"):
            out[k] = float(vals.sum())
            continue
        if k.endswith("_streak"):
            out[k] = float(vals.max())
            continue
        out[k] = float(clu_metrics.Average.from_model_output(vals).compute())
        if k.endswith("loss") and vals.size > 1:
            out[k + "_std"] = float(Std.from_model_output(vals).compute())
    return out
