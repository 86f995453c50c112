"""Issue 11's measured path, exactly as a new user takes it: their own torch Datasets through `uk.from_torch`, then
`uk.train`, `uk.make_split`, `uk.unlearn(model, split, "sfron", data=data)` with nothing else given, and
`uk.evaluate` against the oracle and a second oracle (`uk.noise_floor`). Data: LeNet-5 on a seeded 8,000 / 2,000
subset of MNIST read from its IDX files into plain map-style Datasets of uint8 (H, W) arrays (needs
../shared/data/mnist). Prints one line per run and the mean closing fractions per forget spec.

    UNLEARNKIT_STORE=<store> python benchmarks/from_torch_path.py [method] [seeds]
"""
from __future__ import annotations

import copy
import gzip
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

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


def user_data(train_size: int = 8000, test_size: int = 2000):
    rng = np.random.default_rng(0)
    parts = {}
    for part, prefix, size in (("train", "train", train_size), ("test", "t10k", test_size)):
        images, labels = idx(MNIST / f"{prefix}-images-idx3-ubyte.gz"), idx(MNIST / f"{prefix}-labels-idx1-ubyte.gz")
        chosen = np.sort(rng.choice(len(labels), size, replace=False))
        parts[part] = Digits(images[chosen], labels[chosen])
    return uk.from_torch(parts["train"], parts["test"], name="user-digits", layout="HW", normalize=True)


def main(method: str = "sfron", seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    data = user_data()
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
    main(sys.argv[1] if len(sys.argv) > 1 else "sfron",
         tuple(int(s) for s in sys.argv[2].split(",")) if len(sys.argv) > 2 else (0, 1, 2))
