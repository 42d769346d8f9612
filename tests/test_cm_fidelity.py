"""Original CT / CD against the official CM code (openai/consistency_models_cifar10): the two
target-EMA rules mu(k), and the CIFAR-10 configs' optimizer and metric settings."""
import math

import jax.numpy as jnp
import numpy as np

from genmod import config_lib
from genmod.methods import cm


def test_ct_mu_rules_hand_computed():
    """0.9^(2/N) (paper) and 0.9^(2/(N-1)) (code), by hand: 0.9 vs 0.81 at k = 0 (N = 2)."""
    for N, paper, code in [(2, 0.9, 0.81), (3, 0.932170, 0.9), (151, 0.998605, 0.998596)]:
        np.testing.assert_allclose(float(cm.ct_mu(jnp.float32(N), 2, 0.9, "paper")), paper, atol=1e-6)
        np.testing.assert_allclose(float(cm.ct_mu(jnp.float32(N), 2, 0.9, "code")), code, atol=1e-6)


def test_ct_code_rule_is_the_official_schedule():
    """get_ema_scales_fn (adaptive/progressive), restated: n = max(ceil(sqrt(k/K ((s1+1)^2 - s0^2)
    + s0^2) - 1), 1); mu = exp(s0 ln(mu0) / n); N = n + 1."""
    K, s0, s1, mu0 = 800_000, 2, 150, 0.9
    ks = np.arange(0, K, 997)
    n = np.maximum(np.ceil(np.sqrt(ks / K * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1), 1)
    N = np.asarray(cm.ct_N(ks, K, s0, s1))
    np.testing.assert_array_equal(N, n + 1)
    np.testing.assert_allclose(np.asarray(cm.ct_mu(N, s0, mu0, "code")), np.exp(s0 * math.log(mu0) / n), rtol=1e-6)


def test_cifar10_cd_ct_follow_the_official_runs():
    cd, ct = config_lib.load("cd_cifar10"), config_lib.load("ct_cifar10")
    for c, lr in ((cd, 4e-4), (ct, 2e-4)):  # cifar10_ve_cd.py / cifar10_ve_ct_adaptive.py
        assert (c.cm.metric, c.cm.lpips_resize, c.optim.net.name, c.optim.net.lr) == ("lpips", 224, "radam", lr)
        assert c.optim.net.warmup_img == 0 and not c.optim.net.get("warmup_steps")  # RAdam branch: no warm-up
    assert ct.cm.mu_rule == "code" and cm.defaults().mu_rule == "code"
    assert {config_lib.load(f"{n}:smoke").cm.metric for n in ("cd_cifar10", "ct_cifar10")} == {"l2"}
