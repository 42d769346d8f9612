"""Frozen teachers for distillation: a trained diffusion run's EMA denoiser, loaded read-only
from its workdir, or the exact denoiser of a 2-D mixture (``analytic``)."""
from __future__ import annotations

import os
from typing import Callable

from genmod import data


class Teacher:
    """``denoise(params, x, sigma, labels, dropout_key=None)`` -> D(x; sigma); ``params`` goes in
    ``frozen``. A ``dropout_key`` runs the network in train mode (Diff-Instruct's teacher)."""

    def __init__(self, denoise: Callable, params, config=None):
        self.denoise, self.params, self.config = denoise, params, config


def load(teacher_cfg, data_cfg, net_cfg=None) -> Teacher:
    """``teacher_cfg.workdir``: a workdir of a run whose method has ``denoiser(params, labels)``
    (e.g. edm); ``analytic`` for the closed-form denoiser of ``data_cfg.source`` (gmm:*); or
    ``init`` for an untrained EDM denoiser of ``net_cfg`` (smoke runs only)."""
    wd = teacher_cfg.workdir
    if wd == "init":  # a randomly initialised EDM denoiser of net_cfg: smoke runs and tests only
        import jax
        import jax.numpy as jnp

        from genmod import edm, nets

        D = edm.EDMPrecond(nets.build(net_cfg, tuple(data_cfg.shape), data_cfg.num_classes))
        x = jnp.zeros((1,) + tuple(data_cfg.shape))
        labels = jnp.zeros((1, data_cfg.num_classes)) if data_cfg.num_classes else None
        params = jax.jit(D.init)(jax.random.PRNGKey(0), x, jnp.ones(1), labels)["params"]

        def denoise(p, x, sigma, labels=None, dropout_key=None):
            if dropout_key is None:
                return D.apply({"params": p}, x, sigma, labels)
            return D.apply({"params": p}, x, sigma, labels, train=True, rngs={"dropout": dropout_key})

        return Teacher(denoise, params)
    if wd == "analytic":
        mix = data.mixture_of(data_cfg.source)
        if mix is None:
            raise data.DataError(f"teacher 'analytic' needs a gmm:* data source, not {data_cfg.source!r}")
        return Teacher(lambda params, x, sigma, labels=None, dropout_key=None: mix.denoiser(x, sigma), {})
    if not wd or not os.path.exists(os.path.join(wd, "config.json")):
        raise FileNotFoundError(f"teacher workdir {wd!r} has no config.json: train the teacher first "
                                f"(e.g. python -m genmod.launch --config edm_... --workdir {wd}) or set "
                                f"--config.teacher.workdir")
    from genmod.train import load_workdir

    config, run, state, _ = load_workdir(wd, teacher_cfg.get("step") or None)
    if tuple(config.data.shape) != tuple(data_cfg.shape):
        raise data.DataError(f"teacher {wd} models shape {tuple(config.data.shape)}, this run's data is "
                             f"{tuple(data_cfg.shape)}")
    m = run.method
    if not hasattr(m, "denoiser"):
        raise ValueError(f"teacher {wd} (method {config.method!r}) has no denoiser")

    def denoise(params, x, sigma, labels=None, dropout_key=None):
        kw = {} if dropout_key is None else {"train": True, "dropout_key": dropout_key}
        return m.denoiser(params, labels, **kw)(x, sigma)

    return Teacher(denoise, state.ema["net"], config)
