"""CrossFlow text-to-image at 256 px (Liu et al., CVPR 2025), the published settings.

    python -m genmod.launch --config crossflow_t2i
    python -m genmod.launch --config crossflow_t2i:smoke      # seconds, on any CPU (random latents)
    python -m genmod.crossflow_sample --workdir checkpoints/crossflow_t2i --caption "a red bus" \\
        --add "snow" --alpha 1 --out bus.png                     # latent arithmetic

Flow from the text VE's sample z0 (exactly 32x32x4, SD-VAE latents x 0.23010) to the image
latent, no noise source and no cross-attention. Settings (paper, with the code where the
paper is silent): CLIP ViT-L/14 token features (77 x 768) -> text VE (11 layers, d_ff 1024,
8 heads, dropout 0.1, per-token width 96, flatten, Linear to 2 x 4096); standard KL with
lambda 1e-4 (the code: ``crossflow.kl=official``, ``kl_weight=1e-2``); CLIP-style loss at the
code's raw logit scale; CFG indicator on 10% of the batch; logit-normal t, sigma_min 1e-5;
AdamW lr 1e-4, betas (0.9, 0.9), wd 0.03, 5k warm-up, batch 1024, 600K iterations, EMA 0.9999;
sampling: the code's Euler grid, 50 steps, CFG 7.
Published: COCO zero-shot FID-30K 9.63 (0.95B DiMR, 256 -> 512 px, ~630 A100-days; 10.13 at
300K steps), pytorch-fid-style on 256 px resizes of the generations.

Differences and unknowns [unverified, not run here]:
* Backbone: DiT-XL/2 (675M, the code's DiT port: t and the indicator in adaLN), not the
  paper's 0.95B DiMR. The contrastive image branch is genmod's small conv encoder on the
  latent, not the code's SigLIP ViT-L/16 tower (trained from scratch) on the 256 px image.
* Data are downloads that need preparing: COCO-2014 train images encoded by the SD VAE
  (``data.source``), and per-example CLIP token features with their masks. genmod.data
  reads uint8 images and labels only, so this run needs a source that yields the latents
  as ``x`` and the features as ``seq``/``mask`` (the method consumes those batch keys);
  ``crossflow.features`` takes label-indexed features (K[, J], L, F) when captions are few.
"""
from genmod import config_lib
from genmod.methods import crossflow
from genmod.nets import dit

EMA_0_9999 = 1024 * 6931.125  # half-life in images of a per-step decay 0.9999 at batch 1024


def smoke(c):
    config_lib.smoke(c, dict(arch="genmod.nets.dit:dit", patch=2, width=32, depth=1, heads=2),
                     data_source="synthetic:8x8x4")
    c.data.shape, c.data.num_classes = (8, 8, 4), 10
    c.crossflow.features, c.crossflow.max_len = "", 24  # byte tokens of captions built from labels
    c.crossflow.ve = dict(width=32, depth=1, heads=2, mlp_ratio=2.0, reduce=2, dropout=0.1, logvar_init=0.0)
    c.crossflow.enc = dict(width=8, hidden=32)


def get_config(arg=None):
    c = config_lib.base()
    c.method = "crossflow"
    c.crossflow = crossflow.defaults()
    c.crossflow.update(dict(source="text", features="data/coco2014_train_clip_vitl14.npz", max_len=77,
                            kl="standard", kl_weight=1e-4, logit_scale="raw", p_uncond=0.1,
                            sigma_min=1e-5, t_dist="logit_normal", solver="crossflow", guidance=7.0,
                            scale=0.23010))
    c.crossflow.ve = dict(width=768, depth=11, heads=8, mlp_ratio=1024 / 768, reduce=96, dropout=0.1,
                          logvar_init=0.0)
    c.crossflow.enc = dict(width=256, hidden=2048)
    c.data.source, c.data.shape = "npz:data/coco2014_train_sdvae256_latents.npz", (32, 32, 4)
    c.data.num_classes = 1  # labels index crossflow.features
    c.net = config_lib.ConfigDict(dict(arch="genmod.nets.dit:dit", **dit.dit_xl2()))
    c.total_steps, c.batch_size = 600_000, 1024
    c.optim.net.update(dict(lr=1e-4, b1=0.9, b2=0.9, weight_decay=0.03, warmup_steps=5000))
    c.ema.halflife_img, c.ema.rampup = EMA_0_9999, 0.0
    c.sample.nfe = 50
    c.log_every, c.ckpt_every, c.sample_every, c.num_preview = 1000, 10_000, 10_000, 64
    return config_lib.apply_presets(c, arg, {"smoke": smoke})
