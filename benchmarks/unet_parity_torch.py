"""Numerical parity of genmod.nets.unet.SongUNet against NVlabs/edm's PyTorch SongUNet.

Not part of the test suite (needs torch and EDM's source, neither of which this repo
ships). Usage:

    pip install torch            # CPU wheel is enough
    git clone https://github.com/NVlabs/edm ../edm   # any checkout with training/networks.py
    python benchmarks/unet_parity_torch.py ../edm

(``torch_utils.persistence`` is stubbed if missing.) For several tiny configurations it
builds the torch network, randomises every parameter (so the 1e-5 "init_zero" layers do
not hide errors), copies the weights with ``params_from_torch_state_dict``, sets the
torch Fourier buffer to ``fourier_freqs``, and compares the outputs in float32 on CPU.
It also checks that the parameter-tree shapes agree with a fresh Flax init.
"""
from __future__ import annotations

import os
import sys
import types

import numpy as np


def _import_edm(root):
    sys.path.insert(0, root)
    try:
        import torch_utils.persistence  # noqa: F401
    except Exception:  # stub the pickling helper; only the decorator is used
        pkg = types.ModuleType("torch_utils")
        mod = types.ModuleType("torch_utils.persistence")
        mod.persistent_class = lambda cls: cls
        pkg.persistence = mod
        sys.modules["torch_utils"], sys.modules["torch_utils.persistence"] = pkg, mod
    from training import networks
    return networks


CONFIGS = {
    "ddpmpp": dict(embedding_type="positional", channel_mult_noise=1, encoder_type="standard",
                   decoder_type="standard", resample_filter=(1, 1)),
    "ncsnpp": dict(embedding_type="fourier", channel_mult_noise=2, encoder_type="residual",
                   decoder_type="standard", resample_filter=(1, 3, 3, 1)),
    "skip_fir": dict(embedding_type="positional", channel_mult_noise=1, encoder_type="skip",
                     decoder_type="skip", resample_filter=(1, 3, 3, 1)),
    "residual_skip_box": dict(embedding_type="fourier", channel_mult_noise=2,
                              encoder_type="residual", decoder_type="skip", resample_filter=(1, 1)),
}


def main(edm_root):
    import torch
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from genmod.nets.unet import SongUNet, fourier_freqs, params_from_torch_state_dict

    networks = _import_edm(edm_root)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    base = dict(img_resolution=16, in_channels=3, out_channels=3, model_channels=32,
                channel_mult=(1, 2, 2), num_blocks=1, attn_resolutions=(8,), dropout=0.0)
    worst = 0.0
    for name, arch in CONFIGS.items():
        for label_dim, augment_dim in [(0, 0), (10, 9)]:
            kw = dict(base, label_dim=label_dim, augment_dim=augment_dim, **arch)
            tnet = networks.SongUNet(**{k: (list(v) if isinstance(v, tuple) else v)
                                        for k, v in kw.items()}).eval()
            with torch.no_grad():
                for pname, p in tnet.named_parameters():
                    if p.ndim == 1:
                        is_norm_scale = "norm" in pname and pname.endswith("weight")
                        p.copy_(float(is_norm_scale) + 0.2 * torch.randn_like(p))
                    else:
                        p.copy_(torch.randn_like(p) / np.sqrt(p[0].numel()))
                if arch["embedding_type"] == "fourier":
                    tnet.map_noise.freqs.copy_(torch.from_numpy(
                        fourier_freqs(kw["model_channels"] * kw["channel_mult_noise"], 16.0)))
            params, _ = params_from_torch_state_dict(tnet.state_dict())

            fnet = SongUNet(**kw)
            b = 3
            x = rng.standard_normal((b, 16, 16, 3)).astype(np.float32)
            t = rng.standard_normal((b,)).astype(np.float32)
            y = np.eye(label_dim, dtype=np.float32)[rng.integers(0, label_dim, b)] if label_dim else None
            a = rng.standard_normal((b, augment_dim)).astype(np.float32) if augment_dim else None

            ref_shapes = jax.eval_shape(lambda: fnet.init(jax.random.PRNGKey(0), x, t, y, a))["params"]
            assert jax.tree_util.tree_structure(ref_shapes) == jax.tree_util.tree_structure(params), name
            for s, p in zip(jax.tree_util.tree_leaves(ref_shapes), jax.tree_util.tree_leaves(params)):
                assert s.shape == p.shape, (name, s.shape, p.shape)

            out = np.asarray(fnet.apply({"params": params}, x, t, y, a))
            with torch.no_grad():
                ref = tnet(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(t),
                           None if y is None else torch.from_numpy(y),
                           None if a is None else torch.from_numpy(a)).permute(0, 2, 3, 1).numpy()
            err = float(np.abs(out - ref).max() / np.abs(ref).max())
            worst = max(worst, err)
            print(f"{name:18s} label_dim={label_dim:2d} augment_dim={augment_dim}: "
                  f"max|ref|={np.abs(ref).max():.3g}  max rel err={err:.2e}")
    print(f"worst relative error {worst:.2e}")
    assert worst < 1e-4, worst


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
