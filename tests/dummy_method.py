"""Test-only method: two networks with a k:1 schedule (stage 'a'), then a second stage
('b') that reads stage a's generator read-only. Proves the loop needs no method edits."""
import flax.linen as nn
import jax
import jax.numpy as jnp

from genmod import method


class Lin(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(x.shape[-1])(x)


class TwoNet(method.Method):
    """'gen' and 'critic' each regress their own target; rule 'gen' every k-th step."""

    k = 3

    def __init__(self, config, frozen=None):
        super().__init__(config, frozen)
        self.net = Lin()
        self.tx, self.lr = method.make_optimizer(config.optim.net, config.batch_size)

    def init(self, rng, batch):
        kg, kc = jax.random.split(rng)
        p = {"gen": self.net.init(kg, batch["x"])["params"], "critic": self.net.init(kc, batch["x"])["params"]}
        return method.new_state(rng, p, {"gen": self.tx, "critic": self.tx}, ema=("gen",))

    def _rule(self, name, target_scale):
        def rule(state, batch, frozen):
            noise = jax.random.normal(state.key(), batch["x"].shape)
            loss_fn = lambda p: jnp.mean((self.net.apply({"params": p}, batch["x"] + 0.1 * noise) - target_scale * batch["x"]) ** 2)
            loss, g = jax.value_and_grad(loss_fn)(state.params[name])
            state, m = method.apply_update(state, name, g, self.tx, self.lr, 0.9 if name == "gen" else None)
            return method.finish_step(state, {f"{name}/loss": loss, **m})
        return rule

    def rules(self):
        return {"gen": self._rule("gen", 1.0), "critic": self._rule("critic", -1.0)}

    def schedule(self, step):
        return "gen" if step % self.k == 0 else "critic"

    def sample(self, params, keys, frozen, nfe=None):
        z = jax.vmap(lambda k: jax.random.normal(k, (2,)))(keys)
        return self.net.apply({"params": params["gen"]}, z)


class Refine(method.Method):
    """Stage b: trains 'net' towards stage a's frozen generator output."""

    def __init__(self, config, frozen):
        super().__init__(config, frozen)
        self.net = Lin()
        self.tx, self.lr = method.make_optimizer(config.optim.net, config.batch_size)

    def init(self, rng, batch):
        return method.new_state(rng, {"net": self.net.init(rng, batch["x"])["params"]}, {"net": self.tx}, ema=("net",))

    def rules(self):
        def rule(state, batch, frozen):
            target = self.net.apply({"params": frozen["a"].ema["gen"]}, batch["x"])
            loss_fn = lambda p: jnp.mean((self.net.apply({"params": p}, batch["x"]) - target) ** 2)
            loss, g = jax.value_and_grad(loss_fn)(state.params["net"])
            state, m = method.apply_update(state, "net", g, self.tx, self.lr, 0.5)
            return method.finish_step(state, {"refine/loss": loss, **m})
        return {"refine": rule}

    def sample(self, params, keys, frozen, nfe=None):
        z = jax.vmap(lambda k: jax.random.normal(k, (2,)))(keys)
        return self.net.apply({"params": params["net"]}, z)


class Method(method.Method):
    def stages(self):
        c = self.config
        return [method.Stage("a", c.stage_a_steps, lambda prior: TwoNet(c)),
                method.Stage("b", c.total_steps - c.stage_a_steps, lambda prior: Refine(c, dict(prior)))]
