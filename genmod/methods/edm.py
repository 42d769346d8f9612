"""EDM diffusion (Karras et al. 2022): the teacher of the distillation methods.

``edm.augment_p`` > 0 (absent = 0): EDM's non-leaky augmentation (``genmod.augment``, EDM's
``--augment``) on each training batch, its 9 labels fed to the network (``net.augment_dim`` 9);
sampling and teachers pass none (zeros), as EDM's sampler does.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import ml_collections

from genmod import augment, config_lib, edm, method, nets

AUGMENT_TAG = 0x617567  # state.key(AUGMENT_TAG): the augmentation's own stream


def defaults():
    """The ``config.edm`` block: training noise distribution and sampler (EDM paper values)."""
    return ml_collections.ConfigDict(dict(P_mean=-1.2, P_std=1.2, sigma_data=0.5, sigma_min=0.002,
                                          sigma_max=80.0, rho=7.0, solver="heun"))


class Method(method.Method):
    def __init__(self, config, frozen=None):
        super().__init__(config, frozen)
        c = config
        self.shape, self.num_classes = tuple(c.data.shape), c.data.num_classes
        # edm.precond (absent = "edm"): "vp" / "ve" for EDM's published VP / VE networks
        # (genmod.convert), with edm.precond_kwargs (VP: beta_d, beta_min, M).
        self.D = edm.make_precond(c.edm.get("precond", "edm"), nets.build(c.net, self.shape, self.num_classes),
                                  c.edm.sigma_data, **dict(c.edm.get("precond_kwargs") or {}))
        self.tx, self.lr = method.make_optimizer(c.optim.net, c.batch_size, c.total_steps)
        self.augment_p = c.edm.get("augment_p", 0.0)
        if not isinstance(self.augment_p, (int, float)) or not 0 <= self.augment_p <= 1:
            raise config_lib.ConfigError(f"edm.augment_p must be a probability in [0, 1], got {self.augment_p!r}")
        if self.augment_p and c.net.get("augment_dim", 0) != augment.LABEL_DIM:
            raise config_lib.ConfigError(f"edm.augment_p={self.augment_p} feeds {augment.LABEL_DIM} augmentation "
                                         f"labels to the network: set net.augment_dim={augment.LABEL_DIM} (it is "
                                         f"{c.net.get('augment_dim', 0)})")

    def init(self, rng, batch):
        x = batch["x"]
        p = self.D.init({"params": rng}, x, jnp.ones(x.shape[:1]), method.onehot(batch, self.num_classes))
        return method.new_state(rng, {"net": p["params"]}, {"net": self.tx}, ema=("net",))

    def rules(self):
        return {"train": self.train_step}

    def denoiser(self, params, labels=None, train=False, dropout_key=None, augment_labels=None):
        rngs = {"dropout": dropout_key} if train else {}
        kw = {} if augment_labels is None else {"augment_labels": augment_labels}
        return lambda x, sigma: self.D.apply({"params": params}, x, sigma, labels, train=train, rngs=rngs, **kw)

    def train_step(self, state, batch, frozen):
        c = self.config
        k_loss, k_drop = jax.random.split(state.key())
        labels = method.onehot(batch, self.num_classes)
        y, aug = batch["x"], None
        if self.augment_p:
            y, aug = augment.augment(state.key(AUGMENT_TAG), y, self.augment_p)

        def loss_fn(p):
            D = self.denoiser(p, labels, train=True, dropout_key=k_drop, augment_labels=aug)
            return edm.edm_loss(D, y, k_loss, c.edm.P_mean, c.edm.P_std, c.edm.sigma_data).mean()

        loss, g = jax.value_and_grad(loss_fn)(state.params["net"])
        beta = method.ema_decay(state.step, c.batch_size, c.ema.halflife_img, c.ema.rampup)
        state, m = method.apply_update(state, "net", g, self.tx, self.lr, beta)
        return method.finish_step(state, {"train/loss": loss, **m})

    def sample_labels(self, keys):
        return method.sample_labels(keys, self.num_classes)

    def nfe_used(self, nfe=None):
        return method.ode_nfe_used(nfe or self.config.sample.nfe, self.config.edm.solver)

    def sample(self, params, keys, frozen, nfe=None):
        c = self.config
        z = jax.vmap(lambda k: jax.random.normal(k, self.shape))(keys)
        heun = c.edm.solver == "heun"
        sigmas = edm.karras_sigmas(edm.nfe_to_steps(nfe or c.sample.nfe, heun), c.edm.sigma_min, c.edm.sigma_max, c.edm.rho)
        return edm.heun_sampler(self.denoiser(params["net"], self.sample_labels(keys)), z, sigmas, euler_only=not heun)
