"""The model registry. Every built-in classifier ends in a linear layer named `fc`."""
from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError
from .registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a registered model: stored in every checkpoint record.
    `ensemble` ({"size": n, "aggregation": "vote"|"softmax"}) describes n such models as one (SISA)."""

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    options: dict = field(default_factory=dict)
    ensemble: dict | None = None

    def build(self) -> nn.Module:
        if self.ensemble:
            single = replace(self, ensemble=None)
            return Ensemble([single.build() for _ in range(self.ensemble["size"])], self.ensemble["aggregation"])
        builder = MODELS.get(self.name)
        accepted = [p for p in inspect.signature(builder).parameters
                    if p not in ("in_channels", "image_size", "num_classes")]
        unknown = set(self.options) - set(accepted)
        if unknown:
            raise ConfigError(f"model '{self.name}' has no option(s) {sorted(unknown)}; it takes: {accepted or 'none'}")
        return builder(in_channels=self.in_channels, image_size=self.image_size, num_classes=self.num_classes,
                       **self.options)

    def describe(self) -> dict:
        return asdict(self)


def spec_for(name: str, dataset, **options) -> ModelSpec:
    """The spec of model `name` sized for `dataset` (an ImageDataset), checked by building it and passing one
    image through it, so that a model that cannot take the data fails here, in one line, before any training."""
    if not hasattr(dataset, "image_shape"):
        raise ConfigError(f"spec_for() sizes model '{name}' for an ImageDataset (uk.load_dataset, uk.from_torch), "
                          f"got {type(dataset).__name__}")
    channels, height, width = dataset.image_shape
    if height != width:
        raise ConfigError(f"models expect square images, dataset '{dataset.name}' has {height}x{width}")
    MODELS.get(name)  # fail early on an unknown name
    spec = ModelSpec(name, channels, height, dataset.num_classes, dict(options))
    with torch.random.fork_rng(devices=[]):  # the check must not shift the caller's random stream
        try:
            model = spec.build().eval()
            with torch.no_grad():
                model(torch.zeros(1, channels, height, width))
        except (RuntimeError, ValueError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"model '{name}' cannot take the {channels}x{height}x{width} images of dataset "
                              f"'{dataset.name}' ({reason}): choose a model sized for them "
                              "(see `unlearnkit models`)") from None
    return spec


def trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters a method may change, by name: those that require grad (frozen layers stay as they are)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The final linear layer: `model.fc` for built-in models, else the last nn.Linear registered."""
    if isinstance(getattr(model, "fc", None), nn.Linear):
        return model.fc
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear classifier layer")
    return linears[-1]


@MODELS.register("mlp")
def mlp(in_channels: int, image_size: int, num_classes: int, hidden: tuple[int, ...] = (256, 128)) -> nn.Module:
    """Fully connected ReLU layers (256, 128) on the flattened input: the default for scikit-learn's tables."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * image_size * image_size
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    model = nn.Sequential(*layers)
    model.add_module("fc", nn.Linear(width, num_classes))
    return model


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Three 3x3 conv-BN-ReLU layers, one 2x2 max-pool, global average pooling: sized for 8x8 digits."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(in_channels, width), *_conv_bn(width, 2 * width), nn.MaxPool2d(2),
            *_conv_bn(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


MODELS.register("cnn", SmallCNN)


class LeNet5(nn.Module):
    """LeCun et al. (1998), with ReLU and max-pooling; the first convolution pads to keep 28x28 inputs whole."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten())
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, image_size, image_size)).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, 120), nn.ReLU(inplace=True), nn.Linear(120, 84),
                                  nn.ReLU(inplace=True))
        self.fc = nn.Linear(84, num_classes)

    def forward(self, x):
        return self.fc(self.head(self.features(x)))


MODELS.register("lenet5", LeNet5)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18, CIFAR variant: a 3x3 stride-1 stem and no max-pool (as in the SFR-on and SalUn code)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        blocks, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))))


MODELS.register("resnet18", ResNet18)


AGGREGATIONS = ("vote", "softmax")


class Ensemble(nn.Module):
    """Several models as one classifier (SISA's constituents). Its forward returns the log of the aggregated
    class probabilities, so argmax, softmax, cross-entropy and KL metrics apply unchanged:
    'vote' (SISA's default, `--output_type argmax`): the share of constituents predicting each class
    (ties go to the lowest class index, as numpy's argmax in the code's `aggregation.py`);
    'softmax': the mean of the constituents' softmax outputs. One constituent (SISA of one shard, a
    retraining) is that model's own softmax under either: a vote of one is a one-hot output that no retrained
    model gives."""

    def __init__(self, constituents: list[nn.Module], aggregation: str = "vote"):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got '{aggregation}'")
        self.constituents = nn.ModuleList(constituents)
        self.aggregation = aggregation

    def forward(self, x: Tensor) -> Tensor:
        logits = [m(x).float() for m in self.constituents]
        if self.aggregation == "softmax" or len(logits) == 1:
            log_probs = torch.stack([F.log_softmax(z, dim=1) for z in logits])
            return torch.logsumexp(log_probs, dim=0) - math.log(len(logits))
        votes = torch.stack([F.one_hot(z.argmax(1), z.shape[1]) for z in logits]).float().mean(0)
        return votes.clamp_min(torch.finfo(votes.dtype).tiny).log()  # finite logs for classes with no vote
