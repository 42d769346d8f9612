"""Rectified flow matching (Liu et al. 2022; Lipman et al. 2022): noise at t=0, data at t=1."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from genmod import flow, method, nets
from genmod.methods import edm as edm_method


def defaults():
    """The ``config.fm`` block: t distribution, path offset and ODE solver."""
    return ml_collections.ConfigDict(dict(t_dist="logit_normal", sigma_min=0.0, solver="euler"))


class Method(edm_method.Method):
    """Shares EDM's label handling and sampling interface; the network predicts velocity."""

    def __init__(self, config, frozen=None):
        method.Method.__init__(self, config, frozen)
        c = config
        self.shape, self.num_classes = tuple(c.data.shape), c.data.num_classes
        self.v = nets.build(c.net, self.shape, self.num_classes)
        self.tx, self.lr = method.make_optimizer(c.optim.net, c.batch_size, c.total_steps)

    def init(self, rng, batch):
        x = batch["x"]
        p = self.v.init({"params": rng}, x, jnp.ones(x.shape[:1]), method.onehot(batch, self.num_classes))
        return method.new_state(rng, {"net": p["params"]}, {"net": self.tx}, ema=("net",))

    def velocity(self, params, labels=None, train=False, dropout_key=None):
        rngs = {"dropout": dropout_key} if train else {}
        return lambda x, t: self.v.apply({"params": params}, x, jnp.broadcast_to(t, x.shape[:1]), labels,
                                         train=train, rngs=rngs)

    def train_step(self, state, batch, frozen):
        c = self.config
        k_t, k_x0, k_drop = jax.random.split(state.key(), 3)
        x1 = batch["x"]
        x0 = jax.random.normal(k_x0, x1.shape)
        t = flow.sample_t(k_t, x1.shape[0], c.fm.t_dist)
        labels = method.onehot(batch, self.num_classes)

        def loss_fn(p):
            return flow.fm_loss(self.velocity(p, labels, True, k_drop), x0, x1, t, c.fm.sigma_min).mean()

        loss, g = jax.value_and_grad(loss_fn)(state.params["net"])
        beta = method.ema_decay(state.step, c.batch_size, c.ema.halflife_img, c.ema.rampup)
        state, m = method.apply_update(state, "net", g, self.tx, self.lr, beta)
        return method.finish_step(state, {"train/loss": loss, **m})

    def nfe_used(self, nfe=None):
        return method.ode_nfe_used(nfe or self.config.sample.nfe, self.config.fm.solver)

    def sample(self, params, keys, frozen, nfe=None):
        c = self.config
        x0 = jax.vmap(lambda k: jax.random.normal(k, self.shape))(keys)
        heun = c.fm.solver == "heun"
        steps = (nfe or c.sample.nfe) if not heun else ((nfe or c.sample.nfe) + 1) // 2
        return flow.ode_sampler(self.velocity(params["net"], self.sample_labels(keys)), x0, steps, c.fm.solver)
