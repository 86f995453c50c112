"""Class-conditional noise predictors eps(x_t, t, c): a compact UNet, and diffusers' UNet2DModel as an option.

Every denoiser takes the class index c in 0..num_classes, where c = num_classes is the null (unconditional)
class used by classifier-free guidance, and has a `num_classes` attribute.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry

DENOISERS: Registry[Callable[..., nn.Module]] = Registry("denoiser")


@dataclass(frozen=True)
class DenoiserSpec:
    """Everything needed to rebuild a registered denoiser: stored in every generation checkpoint record."""

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    options: dict = field(default_factory=dict)

    def resolved_options(self) -> dict:
        """The options with the builder's defaults filled in: the whole architecture, so a stored record (and
        the content key made from it) stays right when a default changes."""
        builder = DENOISERS.get(self.name)
        fixed = ("in_channels", "image_size", "num_classes")
        accepted = {n: p.default for n, p in inspect.signature(builder).parameters.items() if n not in fixed}
        unknown = set(self.options) - set(accepted)
        if unknown:
            raise ConfigError(f"denoiser '{self.name}' has no option(s) {sorted(unknown)}; it takes: {list(accepted)}")
        resolved = {**accepted, **self.options}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}

    def build(self) -> nn.Module:
        return DENOISERS.get(self.name)(in_channels=self.in_channels, image_size=self.image_size,
                                        num_classes=self.num_classes, **self.resolved_options())

    def describe(self) -> dict:
        return {**asdict(self), "options": self.resolved_options()}


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """The sinusoidal embedding of DDPM (sin half, cos half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half - 1, 1))
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time+class embedding added between the convolutions."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(math.gcd(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(math.gcd(groups, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class ConditionalUNet(nn.Module):
    """A small UNet: one residual block per resolution, stride-2 convolutions down, nearest upsampling,
    skip connections concatenated, no attention. The class embedding (num_classes + 1 rows, the last one
    the null class) is added to the time embedding. The output convolution starts at zero, so the
    untrained model predicts eps = 0.
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int, channels: tuple[int, ...] = (16, 32, 32),
                 groups: int = 8):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or image_size % 2 ** (len(channels) - 1):
            raise ConfigError(f"image_size {image_size} must be divisible by 2^(levels-1) for channels {channels}")
        self.num_classes = num_classes
        self.base = channels[0]
        emb_dim = 4 * channels[0]
        self.time = nn.Sequential(nn.Linear(channels[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label = nn.Embedding(num_classes + 1, emb_dim)
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, cin = [channels[0]], channels[0]
        for level, cout in enumerate(channels):
            self.down.append(ResBlock(cin, cout, emb_dim, groups))
            skips.append(cout)
            cin = cout
            if level < len(channels) - 1:
                self.downsample.append(nn.Conv2d(cout, cout, 3, stride=2, padding=1))
                skips.append(cout)
        self.middle = ResBlock(cin, cin, emb_dim, groups)
        # One up block per stored skip, mirroring the way down: the stem, then each level's block and (but for
        # the lowest level) its downsampling, all at that level's width.
        widths = [channels[0]]
        for level, c in enumerate(channels):
            widths += [c] * (2 if level < len(channels) - 1 else 1)
        self.up = nn.ModuleList()
        for skip, cout in zip(reversed(skips), reversed(widths)):
            self.up.append(ResBlock(cin + skip, cout, emb_dim, groups))
            cin = cout
        self.out = nn.Sequential(nn.GroupNorm(math.gcd(groups, cin), cin), nn.SiLU(),
                                 nn.Conv2d(cin, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        emb = self.time(timestep_embedding(t, self.base)) + self.label(c)
        h = self.stem(x)
        skips = [h]
        for level, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)
        h = self.middle(h, emb)
        for block in self.up:
            skip = skips.pop()
            if skip.shape[-1] != h.shape[-1]:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(h)


@DENOISERS.register("unet")
def unet(in_channels: int, image_size: int, num_classes: int, channels: tuple[int, ...] = (16, 32, 32),
         groups: int = 8) -> nn.Module:
    """Compact UNet (~0.2M parameters at the default widths), fast enough to train on a CPU in minutes."""
    return ConditionalUNet(in_channels, image_size, num_classes, tuple(channels), groups)


class DiffusersUNet(nn.Module):
    """diffusers' UNet2DModel with a class embedding table of num_classes + 1 rows (the last the null class)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, channels: tuple[int, ...],
                 attention: bool, layers_per_block: int):
        super().__init__()
        try:
            from diffusers import UNet2DModel
        except ImportError:
            raise ConfigError("denoiser 'diffusers-unet' needs the diffusers package: "
                              "pip install 'unlearnkit[generation]'") from None
        levels = len(channels)
        down = ["DownBlock2D"] * levels
        up = ["UpBlock2D"] * levels
        if attention:  # attention at the lowest resolution only, as the DDPM CIFAR model attends at 16x16 of 32x32
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        self.num_classes = num_classes
        self.net = UNet2DModel(sample_size=image_size, in_channels=in_channels, out_channels=in_channels,
                               block_out_channels=tuple(channels), down_block_types=tuple(down),
                               up_block_types=tuple(up), layers_per_block=layers_per_block,
                               num_class_embeds=num_classes + 1,
                               norm_num_groups=math.gcd(*channels) if levels > 1 else channels[0])

    def forward(self, x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        return self.net(x, t, class_labels=c).sample


@DENOISERS.register("diffusers-unet")
def diffusers_unet(in_channels: int, image_size: int, num_classes: int, channels: tuple[int, ...] = (32, 64),
                   attention: bool = True, layers_per_block: int = 1) -> nn.Module:
    """diffusers' UNet2DModel (optional extra `generation`): larger and slower, for GPUs."""
    return DiffusersUNet(in_channels, image_size, num_classes, tuple(channels), attention, layers_per_block)
