"""Stable Diffusion's components from diffusers and transformers: UNet2DConditionModel (cross-attention on the
text), CLIPTextModel with a CLIPTokenizer, optionally AutoencoderKL, and the noise schedule.

Two ways to get them: `build_components(spec)` builds a small model from a config (tiny widths, a local
tokenizer; no hub), `load_components(model_dir)` reads a local diffusers folder (a saved Stable Diffusion, or
what `Components.save` writes) with `local_files_only=True`. `TextToImageModel` is the nn.Module the unlearning
engine sees: its parameters are the UNet's; the text encoder (and VAE) are frozen and held outside the module,
shared by copies, with the prompt embeddings cached.

The embedded default works in pixel space (no VAE): at 16x16 a VAE would leave a 2x2 or 4x4 latent, cost a
training of its own, and add its reconstruction error to every evaluation, while the methods under test only
touch the UNet. `latent=True` adds a tiny AutoencoderKL, as SD has, for the SD-shaped test model.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..errors import ConfigError
from ..generation.schedule import NoiseSchedule


class ModelSpec(BaseModel):
    """A text-to-image model built from a config: the UNet's levels (cross-attention or not, per level, as SD's
    CrossAttnDownBlock2D / DownBlock2D), the text encoder's size, the tokenizer's length, an optional VAE."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(16, ge=4, description="side of the images (pixel space) or of the latents")
    channels: int = Field(1, ge=1, description="image channels (pixel space) or latent channels")
    widths: tuple[int, ...] = Field((16, 32, 32), min_length=1, description="UNet channels per level")
    cross_attention: tuple[bool, ...] = Field((False, False, True), min_length=1,
                                              description="per level: a cross-attention block (text) or a plain one")
    layers_per_block: int = Field(1, ge=1, description="resnet layers per down block (up blocks have one more)")
    heads: int = Field(1, ge=1, description="attention heads of the UNet's transformer blocks")
    norm_groups: int = Field(8, ge=1, description="GroupNorm groups (divides every width)")
    text_width: int = Field(32, ge=4, description="CLIP text encoder hidden size = cross-attention dim")
    text_layers: int = Field(1, ge=1, description="CLIP text encoder layers")
    text_heads: int = Field(2, ge=1, description="CLIP text encoder heads")
    text_init: float = Field(1.0, gt=0, description="CLIP's initializer_factor (init scale of the text encoder)")
    max_length: int = Field(8, ge=4, description="tokens per prompt (SD: 77)")
    latent: bool = Field(False, description="add a tiny AutoencoderKL (images 2x the latent size, 3 channels)")

    def unet_config(self) -> dict[str, Any]:
        if len(self.widths) != len(self.cross_attention):
            raise ConfigError(f"widths {self.widths} and cross_attention {self.cross_attention} differ in length")
        if any(w % self.norm_groups for w in self.widths):
            raise ConfigError(f"norm_groups {self.norm_groups} must divide every width {self.widths}")
        down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in self.cross_attention]
        up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(self.cross_attention)]
        return {"sample_size": self.image_size, "in_channels": self.channels, "out_channels": self.channels,
                "block_out_channels": list(self.widths), "down_block_types": down, "up_block_types": up,
                "layers_per_block": self.layers_per_block, "cross_attention_dim": self.text_width,
                "attention_head_dim": self.heads, "norm_num_groups": self.norm_groups}


def sd_shaped_spec() -> ModelSpec:
    """SD v1's layout at toy size: three cross-attention levels then a plain one, a latent VAE, 77 tokens."""
    return ModelSpec(image_size=8, channels=4, widths=(8, 8, 16, 16), cross_attention=(True, True, True, False),
                     heads=2, norm_groups=4, text_width=16, text_layers=1, max_length=77, latent=True)


@dataclass
class Components:
    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    vae: Any = None

    def save(self, folder: str | Path) -> Path:
        """Write a diffusers folder (model_index.json, unet/, text_encoder/, tokenizer/, scheduler/, vae/ if any)
        that StableDiffusionPipeline.from_pretrained(folder, local_files_only=True) reads back."""
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                                       unet=self.unet, scheduler=self.scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(str(folder))
        return Path(folder)

    def schedule(self) -> NoiseSchedule:
        """The DDPM forward process of the scheduler's config (any diffusers scheduler: its betas)."""
        config = dict(self.scheduler.config)
        if config.get("prediction_type", "epsilon") != "epsilon":
            raise ConfigError(f"only epsilon-prediction models are supported, this one predicts "
                              f"'{config.get('prediction_type')}'")
        return SchedulerSchedule(torch.as_tensor(self.scheduler.betas, dtype=torch.float64),
                                 config.get("beta_schedule", "linear"))


@dataclass(frozen=True)
class SchedulerSchedule(NoiseSchedule):
    """A NoiseSchedule taken from a diffusers scheduler (SD: 'scaled_linear' 0.00085..0.012)."""

    kind: str = "linear"

    def describe(self) -> dict:
        return {"kind": self.kind, "timesteps": self.timesteps, "beta_start": float(self.betas[0]),
                "beta_end": float(self.betas[-1])}


def build_components(spec: ModelSpec | None = None, words: list[str] | None = None,
                     schedule: tuple[float, float] = (1e-4, 0.02)) -> Components:
    """A fresh (untrained) model from `spec`, with the local tokenizer over `words` (default: the captions')
    and a linear DDPM schedule over 1000 steps. Initial weights follow torch's global seed."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .prompts import words as caption_words
    from .tokenizer import build_tokenizer

    spec = spec or ModelSpec()
    tokenizer = build_tokenizer(words or caption_words(), spec.max_length)
    text_config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=spec.text_width,
                                 intermediate_size=2 * spec.text_width, num_hidden_layers=spec.text_layers,
                                 num_attention_heads=spec.text_heads, max_position_embeddings=spec.max_length,
                                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id, initializer_factor=spec.text_init)
    vae = None
    if spec.latent:
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=spec.channels,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4,
                            sample_size=2 * spec.image_size)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=schedule[0], beta_end=schedule[1],
                              beta_schedule="linear", prediction_type="epsilon", steps_offset=1, clip_sample=False)
    return Components(UNet2DConditionModel(**spec.unet_config()), CLIPTextModel(text_config), tokenizer, scheduler, vae)


def load_components(model_dir: str | Path) -> Components:
    """The components of a local diffusers folder (Stable Diffusion's layout), read with local_files_only=True."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(model_dir).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"model dir '{folder}' does not exist (expected a local diffusers folder)")
    missing = [p for p in ("unet", "text_encoder", "tokenizer", "scheduler") if not (folder / p).is_dir()]
    if missing:
        lacks = ", ".join(m + "/" for m in missing)
        raise ConfigError(f"'{folder}' is not a Stable Diffusion folder: it lacks {lacks}")
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
        config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        scheduler = DDPMScheduler.from_config(config)  # only its betas and prediction type are used
        vae = (AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True)
               if (folder / "vae").is_dir() else None)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot read the diffusers folder '{folder}': {first}") from None
    return Components(unet, text_encoder, tokenizer, scheduler, vae)


class PromptEncoder:
    """The frozen CLIP text encoder and its tokenizer, with a cache of prompt embeddings (the last hidden
    state, SD's conditioning) on the CPU."""

    def __init__(self, text_encoder, tokenizer):
        self.encoder = text_encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self._cache: dict[str, Tensor] = {}

    @property
    def max_length(self) -> int:
        return int(self.tokenizer.model_max_length)

    def tokens(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """(input_ids, attention_mask), padded to max_length as SD does."""
        out = self.tokenizer(list(prompts), padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        return out.input_ids, out.attention_mask

    @torch.no_grad()
    def embed(self, prompts: list[str]) -> Tensor:
        """(N, max_length, width) embeddings of `prompts`, from the cache where it has them."""
        new = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if new:
            device = next(self.encoder.parameters()).device
            ids, _ = self.tokens(new)
            states = self.encoder(ids.to(device)).last_hidden_state.float().cpu()
            self._cache.update(zip(new, states))
        return torch.stack([self._cache[p] for p in prompts])

    def last_token(self, prompt: str) -> int:
        """Position of the prompt's last word token (before EOS), the token UCE edits (as its code counts it)."""
        _, mask = self.tokens([prompt])
        return max(int(mask.sum()) - 2, 0)

    def positions(self, prompt: str, snippet: str, pooler: bool = True) -> Tensor:
        """Boolean (max_length,) mask of where `snippet`'s tokens sit in `prompt`, plus every EOS token when
        `pooler` (FMN's `use_pooler`; with SD v1's tokenizer the padding is EOS too, so it counts)."""
        ids = self.tokens([prompt])[0][0].tolist()
        target = self.tokenizer(snippet, add_special_tokens=False).input_ids
        marks = [False] * len(ids)
        for i in range(len(ids) - len(target) + 1):
            if ids[i:i + len(target)] == target:
                marks[i:i + len(target)] = [True] * len(target)
        if pooler:
            marks = [m or t == self.tokenizer.eos_token_id for m, t in zip(marks, ids)]
        return torch.tensor(marks)


class TextToImageModel(nn.Module):
    """eps(x_t, t, text embeddings): the UNet, with the frozen text encoder, VAE and noise schedule beside it.

    `named_parameters()` are the UNet's only (prefixed 'unet.'), so the engine's optimisers, masks and Fishers
    see the UNet; a deepcopy (the engine's frozen original) copies the UNet and shares the frozen parts."""

    def __init__(self, components: Components):
        super().__init__()
        self.unet = components.unet
        # Not submodules: frozen, shared between copies, never in state_dict or named_parameters.
        object.__setattr__(self, "text", PromptEncoder(components.text_encoder, components.tokenizer))
        object.__setattr__(self, "vae", components.vae.eval().requires_grad_(False) if components.vae else None)
        object.__setattr__(self, "schedule", components.schedule())
        object.__setattr__(self, "scheduler", components.scheduler)

    def __deepcopy__(self, memo):
        for shared in (self.text, self.vae, self.schedule, self.scheduler):
            memo[id(shared)] = shared
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            clone.__dict__[key] = copy.deepcopy(value, memo)
        return clone

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        for frozen in (self.text.encoder, self.vae):
            if frozen is not None:
                frozen._apply(fn, recurse)
        return self

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        config = self.unet.config
        size = config.sample_size if isinstance(config.sample_size, int) else config.sample_size[0]
        return (config.in_channels, size, size)

    def forward(self, x_t: Tensor, t: Tensor, context: Tensor) -> Tensor:
        return self.unet(x_t, t, encoder_hidden_states=context).sample

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """What the UNet works on, from images in [-1, 1] (the identity in pixel space): the VAE's posterior mean,
        scaled as SD scales its latents."""
        if self.vae is None:
            return images
        scale = getattr(self.vae.config, "scaling_factor", 0.18215)
        device = next(self.vae.parameters()).device
        return self.vae.encode(images.to(device)).latent_dist.mean.cpu() * scale

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Images in [-1, 1] from what the UNet generates (the identity in pixel space)."""
        if self.vae is None:
            return latents.clamp(-1, 1)
        scale = getattr(self.vae.config, "scaling_factor", 0.18215)
        return self.vae.decode(latents.to(next(self.vae.parameters()).device) / scale).sample.clamp(-1, 1)

    def components(self) -> Components:
        return Components(self.unet, self.text.encoder, self.text.tokenizer, self.scheduler, self.vae)


def cross_attention_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The UNet's cross-attention modules (diffusers names them 'attn2', as CompVis did), by name."""
    return {n: m for n, m in model.named_modules() if n.endswith("attn2")}
