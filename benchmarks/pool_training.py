"""Samples/s of a pool of digits CNNs, each on a random half: one at a time with `fit` against the pool trainers.

    .venv/bin/python benchmarks/pool_training.py                      # 32 members, the digits recipe, 3 repeats
    .venv/bin/python benchmarks/pool_training.py --epochs 1           # a short burst (samples/s is per epoch)
    .venv/bin/python benchmarks/pool_training.py --profile            # where one training step spends its time

Repeats run round-robin over the strategies, so that load from other processes spreads over all of them; the
minimum wall time is the least disturbed figure. Time it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from unlearnkit.audit.vectorised import train_pool
from unlearnkit.data import load_dataset
from unlearnkit.data.datasets import DATASETS
from unlearnkit.models import spec_for
from unlearnkit.runtime import Runtime, seed_everything, warm_up
from unlearnkit.training import fit


def one_at_a_time_with_fit(data, spec, recipe, seeds, subsets, runtime):
    for seed, rows in zip(seeds, subsets):
        seed_everything(seed)
        fit(spec.build(), data.train(rows), recipe, runtime, seed)


STRATEGIES = {
    "fit, one at a time": one_at_a_time_with_fit,
    "vmap, all members": lambda *a: train_pool(*a, vectorised=True),
    "vmap, chunks of 8": lambda *a: train_pool(*a, vectorised=True, chunk_size=8),
    "fit, channels_last": lambda *a: train_pool(*a, vectorised=False, channels_last=True),
}


def profile_step(data, spec, members: int, batch_size: int) -> None:
    """The top operators of one SGD step of one model and of a vmap pool, and the FLOP rate of the former."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    x = data.normalise(data.train_images[:batch_size * members])
    y = data.train_labels[:batch_size * members]
    models = [spec.build() for _ in range(members)]
    single = models[0]
    single_opt = torch.optim.SGD(single.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(single).to("meta")
    pool_opt = torch.optim.SGD(list(params.values()), lr=0.01, momentum=0.9, weight_decay=5e-4)
    pooled = vmap(lambda p, b, xs, ys: F.cross_entropy(functional_call(base, (p, b), (xs,)), ys))
    xs, ys = x.reshape(members, batch_size, *x.shape[1:]), y.reshape(members, batch_size)

    def single_step():
        loss = F.cross_entropy(single(x[:batch_size]), y[:batch_size])
        single_opt.zero_grad()
        loss.backward()
        single_opt.step()

    def pool_step():
        loss = pooled(params, buffers, xs, ys).sum()
        pool_opt.zero_grad()
        loss.backward()
        pool_opt.step()

    with FlopCounterMode(display=False) as counter:
        single_step()
    for name, step, repeat in (("one model", single_step, 50), (f"vmap pool of {members}", pool_step, 3)):
        for _ in range(3):
            step()
        started = time.perf_counter()
        for _ in range(repeat):
            step()
        ms = (time.perf_counter() - started) / repeat * 1e3
        per_member = ms / (1 if step is single_step else members)
        line = f"{name}: {ms:.2f} ms per step, {per_member:.2f} ms per member-step"
        if step is single_step:
            line += f", {counter.get_total_flops() / ms / 1e6:.0f} GFLOP/s"
        print(line)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeat):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=None, help="default: the digits recipe's")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES))
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    data = load_dataset("digits")
    spec = spec_for("cnn", data)
    recipe = DATASETS.get("digits").recipe
    if args.epochs:
        recipe = recipe.with_overrides({"epochs": args.epochs})
    n = len(data.train_labels)
    generator = torch.Generator().manual_seed(0)
    subsets = [torch.randperm(n, generator=generator)[: n // 2] for _ in range(args.members)]
    seeds = list(range(args.members))
    samples = args.members * recipe.epochs * (n // 2)
    print(f"digits cnn, {args.members} members x {n // 2} samples x {recipe.epochs} epochs, batch {recipe.batch_size}"
          f" ({samples} sample passes per run), {args.repeats} repeats, torch {torch.__version__}")
    for threads in args.threads:
        runtime = Runtime.create("cpu", threads)
        warm_up()
        if args.profile:
            print(f"--- profile, {threads} thread(s)")
            profile_step(data, spec, args.members, recipe.batch_size)
            continue
        walls: dict[str, list[float]] = {name: [] for name in args.only}
        for _ in range(args.repeats):
            for name in args.only:
                started = time.perf_counter()
                STRATEGIES[name](data, spec, recipe, seeds, subsets, runtime)
                walls[name].append(time.perf_counter() - started)
        baseline = statistics.median(walls[args.only[0]])
        print(f"--- {threads} thread(s): samples/s min / median of {args.repeats} runs, speed-up of the median vs "
              f"'{args.only[0]}'")
        for name, times in walls.items():
            slowest, middle = max(times), statistics.median(times)
            print(f"{name:22s} {samples / slowest:8.0f} / {samples / middle:8.0f}   x{baseline / middle:.2f}")


if __name__ == "__main__":
    main()
