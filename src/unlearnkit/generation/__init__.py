"""Class-wise forgetting in a class-conditional DDPM with classifier-free guidance.

- data: any labelled dataset brought to a square size in [-1, 1] (digits: 8x8 padded to 16x16)
- schedule, unet, sampling, training: the DDPM (linear betas, eps-prediction, condition dropout), a compact
  UNet (or diffusers' UNet2DModel with the `generation` extra), seeded DDIM sampling, content-keyed training
- task, parts, methods, engine: the diffusion Task on the shared unlearning engine, and the generation
  methods (SFR-on, SalUn, RL, SA, GA) in their own registry
- metrics, evaluation, report, bench: forgetting accuracy, classifier-feature FID, and the bench report
"""
from . import dit  # noqa: F401  (registers the "dit" denoiser beside the UNet)
