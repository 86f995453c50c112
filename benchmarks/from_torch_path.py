"""Issue 11's measured path, exactly as a new user takes it: their own torch Datasets through `uk.from_torch`, then
`uk.train`, `uk.make_split`, `uk.unlearn(model, split, "sfron", data=data)` with nothing else given, and
`uk.evaluate` against the oracle and a second oracle (`uk.noise_floor`). Data: LeNet-5 on a seeded 8,000 / 2,000
subset of MNIST read from its IDX files into plain map-style Datasets of uint8 (H, W) arrays (needs
../shared/data/mnist). Prints one line per run and the mean closing fractions per forget spec.

`--data distorted` makes a set no default was chosen on, as hard as the issue's user's: every image of that subset
is rotated, scaled and shifted at random and given pixel noise, once, with a fixed seed (a new dataset, not
augmentation). LeNet-5 then fits train to 100% and tests at 93%, the issue's 99.9% / 94.1%.

`--bench OUT` runs every method at its defaults on the same data through `uk.bench` instead, writing its tables,
report and verdicts to OUT.

    UNLEARNKIT_STORE=<store> python benchmarks/from_torch_path.py [--method M] [--seeds 0,1,2] [--data distorted]
        [--bench OUT]
"""
from __future__ import annotations

import argparse
import copy
import gzip
import statistics
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import unlearnkit as uk

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


class Digits(torch.utils.data.Dataset):
    """What a user's own Dataset looks like: (uint8 H×W image, int label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def distort(images: np.ndarray, seed: int) -> np.ndarray:
    """Each image once through its own random similarity transform (rotation up to ±0.5 rad, scale ±25%, shift
    ±15% of the side), plus Gaussian pixel noise of std 0.35 in [0, 1] units; uint8 in, uint8 out."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(images, dtype=torch.float32)[:, None] / 255.0
    n = len(x)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * 0.5
    scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * 0.25
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * 0.15
    theta = torch.stack([torch.stack([scale * angle.cos(), -scale * angle.sin(), shift[:, 0]], 1),
                         torch.stack([scale * angle.sin(), scale * angle.cos(), shift[:, 1]], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    x = (x + 0.35 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    return (x[:, 0] * 255).round().to(torch.uint8).numpy()


def user_data(distorted: bool = False, train_size: int = 8000, test_size: int = 2000):
    rng = np.random.default_rng(0)
    parts = {}
    for offset, (part, prefix, size) in enumerate((("train", "train", train_size), ("test", "t10k", test_size))):
        images, labels = idx(MNIST / f"{prefix}-images-idx3-ubyte.gz"), idx(MNIST / f"{prefix}-labels-idx1-ubyte.gz")
        chosen = np.sort(rng.choice(len(labels), size, replace=False))
        images = distort(images[chosen], offset) if distorted else images[chosen]
        parts[part] = Digits(images, labels[chosen])
    name = "user-distorted-digits" if distorted else "user-digits"
    return uk.from_torch(parts["train"], parts["test"], name=name, layout="HW", normalize=True)


def main(method: str = "sfron", seeds: tuple[int, ...] = (0, 1, 2), distorted: bool = False) -> None:
    data = user_data(distorted)
    spec = uk.spec_for("lenet5", data)
    runtime = uk.Runtime.create("cpu", 1)
    for forget in ("random:0.1", "class:3"):
        closing, costs = [], []
        for seed in seeds:
            original = uk.train(data, spec, seed=seed, runtime=runtime)
            split = uk.make_split(forget, data, seed)
            result = uk.unlearn(copy.deepcopy(original.load_model()), split, method, data=data)
            oracle = uk.train(data, spec, seed=seed, split=split, runtime=runtime)
            floor = uk.noise_floor(data, spec, split, seed=seed, runtime=runtime)
            report = uk.evaluate(result, oracle, split, data, original=original, floor=floor, runtime=runtime)
            closing.append(report["closing"])
            costs.append(report["cost_ratio"])
            print(f"{forget} seed {seed}: Avg.Gap {report['avg_gap']:.2f} (nothing {report['nothing']['avg_gap']:.2f}, "
                  f"floor {report['floor']['avg_gap']:.2f}), KL {report['kl_forget']:.3f} (nothing "
                  f"{report['nothing']['kl_forget']:.3f}, floor {report['floor']['kl_forget']:.3f}), closes "
                  f"{report['closing']['avg_gap']:.2f} / {report['closing']['kl_forget']:.2f}, cost "
                  f"{report['cost_ratio']:.3f}, TA {report['test_acc']:.2f} (oracle "
                  f"{report['gaps']['test_acc']:+.2f} away); {result.details['calibration']['decision']}", flush=True)
        means = {k: statistics.fmean(c[k] for c in closing) for k in ("avg_gap", "kl_forget")}
        print(f"{forget}: {method} closes {means['avg_gap']:.2f} (Avg.Gap) / {means['kl_forget']:.2f} (KL) on average, "
              f"cost {statistics.fmean(costs):.3f} of a retraining", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="sfron")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--data", choices=("mnist", "distorted"), default="mnist")
    parser.add_argument("--bench", type=Path, metavar="OUT", help="every method through uk.bench, written to OUT")
    args = parser.parse_args()
    seeds, distorted = tuple(int(s) for s in args.seeds.split(",")), args.data == "distorted"
    if args.bench:
        uk.bench(user_data(distorted), "lenet5", forget=("random:0.1", "class:3"), seeds=seeds, out=args.bench,
                 runtime=uk.Runtime.create("cpu", 1))
    else:
        main(args.method, seeds, distorted)
