"""A class-conditional diffusion transformer (DiT, Peebles & Xie 2023), diffusers' `DiTTransformer2DModel`, as a
denoiser beside the UNet: the backbone of the SFR-on paper's ImageNet experiments, here compact for 16x16 images.

Like every denoiser it takes the class c in 0..num_classes (num_classes: the null class of classifier-free
guidance) and predicts the noise. diffusers' label embedder drops labels by itself in train mode (its
`class_dropout_prob`); that is switched off, since the training loop and the diffusion Task drop the condition
themselves, with their own seeded generator, exactly as for the UNet.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError
from .unet import DENOISERS


class DiTDenoiser(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, patch_size: int, layers: int, heads: int,
                 head_dim: int):
        super().__init__()
        try:
            from diffusers import DiTTransformer2DModel
        except ImportError:
            needs = "denoiser 'dit' needs the diffusers package: pip install 'unlearnkit[generation]'"
            raise ConfigError(needs) from None
        if image_size % patch_size:
            raise ConfigError(f"dit: image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.num_classes = num_classes
        self.net = DiTTransformer2DModel(num_attention_heads=heads, attention_head_dim=head_dim,
                                         in_channels=in_channels, out_channels=in_channels, num_layers=layers,
                                         sample_size=image_size, patch_size=patch_size,
                                         num_embeds_ada_norm=num_classes)
        for module in self.net.modules():  # keeps the null-class row the table was built with
            if hasattr(module, "dropout_prob") and hasattr(module, "embedding_table"):
                module.dropout_prob = 0.0

    def forward(self, x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        return self.net(x, timestep=t, class_labels=c).sample


@DENOISERS.register("dit")
def dit(in_channels: int, image_size: int, num_classes: int, patch_size: int = 2, layers: int = 4, heads: int = 4,
        head_dim: int = 16) -> nn.Module:
    """Diffusion transformer (diffusers' DiTTransformer2DModel, adaLN-zero), ~0.3M parameters at the defaults."""
    return DiTDenoiser(in_channels, image_size, num_classes, patch_size, layers, heads, head_dim)
