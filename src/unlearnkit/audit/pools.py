"""Pools of models for per-example audits: K members, each with an original, an oracle and, per method, an
unlearned model, every one trained through the content-keyed store and run as a Job on an Executor.

The plan (`plan_pool`), all of it a pure function of the data, the forget spec, K and the pool seed:
- Candidates F*: the forget spec drawn once over the whole training set (`make_split(forget, dataset, seed)`):
  random:0.1 is a seeded 10% of it, class:3 every sample of class 3.
- Halves: members come in complementary pairs (2j, 2j + 1). Pair j draws a random half of the training set
  (seeded by the pool seed and j); member 2j trains on it and member 2j + 1 on the rest. Marginally each member
  still gets a uniformly random half, but now every example is in exactly K/2 members, as in LiRA's keep matrix,
  so that no candidate lacks shadows (with independent halves the counts are Binomial(K, 1/2)). With an odd
  training set one example (drawn with the pool seed) is in no half and is no candidate, so halves are equal.
- Member k's forget set is F* ∩ half_k: the part of the shared candidates it trained on. Sharing F* is what
  gives each candidate K/2 members that unlearned it and K/2 that never saw it.
- Groups: pairs with even j form group A, odd j group B (K a multiple of 4). Each candidate is then in exactly
  K/4 halves of each group: the challenge's epsilon and KLOM compare K/4 models of A with K/4 oracles of B.
- Seeds: member k trains (original and oracle alike, as `pipeline.train` pairs them) and unlearns with a seed
  drawn from (pool seed, k).

Member k's data is an ImageDataset of its own (`member_dataset`: its half as the training part, the same test
part, its own content fingerprint), so `pipeline.train`, `ForgetSplit` and `unlearn` apply unchanged, and every
original and oracle lands in the store under the same keys an ordinary run would give it. Unlearned models are
not stored, only their statistics. For every model the statistics (`model_statistics`) cover every training
example of the full dataset, since a member's statistics on the examples outside its half are what the audits
compare against; they are kept as .npz files under `<store>/audit/statistics/`, content-keyed, written atomically.
"""
from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import RECORD, atomic_write_file, content_key, load_checkpoint, save_checkpoint, warn_damaged
from ..config import TrainRecipe
from ..data.images import ImageDataset
from ..data.splits import ForgetSplit, make_split
from ..errors import ConfigError, DivergenceError, SplitError
from ..executor import Executor, Job
from ..models import ModelSpec
from ..pipeline import describe_model, train
from ..runtime import Runtime, check_seed
from ..training import accuracy, predict
from .statistics import logit_confidence, margins
from .vectorised import pool_is_vectorisable, train_pool

ORACLE, ORIGINAL = "oracle", "original"
SANITY_ROWS = (ORACLE, ORIGINAL)  # the pool's own kinds, which every audit reports beside the methods
STATISTICS_VERSION = 1  # bump when model_statistics changes what it stores
STATISTICS = ("phi", "phi_challenge", "margin", "correct", "test_acc")  # what model_statistics stores
CHALLENGE_GUARD = 1e-45  # the challenge's metric.py computes phi with this guard (see statistics.logit_confidence)
_HALF_STREAM, _SEED_STREAM = 1, 2  # separate random streams for the halves and the members' seeds


# --------------------------------------------------------------------------------------------------------- plan

@dataclass(frozen=True, eq=False)
class PoolPlan:
    """Which member trains on which examples and forgets which: see the module docstring.

    `halves[k, n]` is True when member k trains on training example n; `candidates[n]` when n is in F*;
    `seeds[k]` is member k's training and unlearning seed; `group_a[k]` whether k is in group A."""

    forget: str
    seed: int
    halves: np.ndarray
    candidates: np.ndarray
    seeds: tuple[int, ...]
    forgotten_classes: tuple[int, ...] = ()

    @property
    def models(self) -> int:
        return len(self.seeds)

    @property
    def n_train(self) -> int:
        return self.halves.shape[1]

    @property
    def forget_masks(self) -> np.ndarray:
        """(K, N): member k trained on n and unlearns it, n ∈ F* ∩ half_k."""
        return self.halves & self.candidates

    @property
    def candidate_index(self) -> np.ndarray:
        return np.flatnonzero(self.candidates)

    @property
    def group_a(self) -> np.ndarray:
        return (np.arange(self.models) // 2) % 2 == 0

    @property
    def per_side(self) -> int:
        """Models per side of the challenge's epsilon and KLOM for every candidate: K/4."""
        return self.models // 4

    def rows(self, k: int) -> np.ndarray:
        """Member k's training examples, ascending: row i of its dataset is training example rows(k)[i]."""
        return np.flatnonzero(self.halves[k])

    def split(self, k: int, data: ImageDataset | None = None) -> ForgetSplit:
        """Member k's forget split, indexing its own dataset (`member_dataset(dataset, plan.rows(k))`)."""
        forget = np.flatnonzero(self.candidates[self.rows(k)]).astype(np.int64)
        remain = np.flatnonzero(~self.candidates[self.rows(k)]).astype(np.int64)
        return ForgetSplit(self.forget, self.seed, forget, remain, self.forgotten_classes, data)

    def describe(self) -> dict[str, Any]:
        return {"models": self.models, "seed": self.seed, "forget": self.forget, "n_train": self.n_train,
                "half": int(self.halves[0].sum()), "candidates": int(self.candidates.sum()),
                "per_side": self.per_side, "forget_per_member": self.forget_masks.sum(1).tolist(),
                "forgotten_classes": list(self.forgotten_classes),
                "key": content_key({"halves": content_key(np.packbits(self.halves).tobytes().hex()),
                                    "candidates": self.candidate_index.tolist(), "seeds": list(self.seeds)})}


def check_models(models: Any) -> int:
    """K: a whole multiple of 4, at least 8 (pairs of halves in two groups, and K/4 >= 2 models per side)."""
    if isinstance(models, bool) or not isinstance(models, (int, np.integer)) or models < 8 or models % 4:
        raise ConfigError(f"models must be a multiple of 4 and at least 8 (complementary pairs of halves in two "
                          f"groups, so each candidate has K/4 >= 2 models per side), got {models!r}")
    return int(models)


def member_seed(seed: int, k: int) -> int:
    """Member k's training and unlearning seed, from the pool seed (distinct across pools and members)."""
    return int(np.random.SeedSequence([seed, k, _SEED_STREAM]).generate_state(1)[0])


def plan_pool(dataset: ImageDataset, forget: str, models: int, seed: int = 0) -> PoolPlan:
    """The pool of `models` members for `forget` over `dataset`'s training set, from `seed` (module docstring)."""
    models, seed = check_models(models), check_seed(seed, "the pool seed")
    try:
        candidates_split = make_split(forget, dataset, seed)
    except SplitError as exc:
        raise ConfigError(str(exc)) from None
    n = len(dataset.train_labels)
    usable = np.arange(n)
    if n % 2:  # one example sits out, so that every half has the same size (and a vectorised pool can train)
        usable = np.delete(usable, np.random.default_rng([seed, _HALF_STREAM]).integers(n))
    halves = np.zeros((models, n), dtype=bool)
    for j in range(models // 2):
        order = np.random.default_rng([seed, j, _HALF_STREAM]).permutation(usable)
        halves[2 * j, order[: len(order) // 2]] = True
        halves[2 * j + 1, order[len(order) // 2:]] = True
    candidates = np.zeros(n, dtype=bool)
    candidates[candidates_split.forget] = True
    candidates &= halves.any(0)
    plan = PoolPlan(forget, seed, halves, candidates, tuple(member_seed(seed, k) for k in range(models)),
                    candidates_split.forgotten_classes)
    _check_forget_sets(plan)
    return plan


def _check_forget_sets(plan: PoolPlan) -> None:
    sizes = plan.forget_masks.sum(1)
    half = int(plan.halves[0].sum())
    if sizes.min() == 0:
        raise ConfigError(f"forget spec '{plan.forget}' leaves member {int(sizes.argmin())} nothing to forget "
                          f"({int(plan.candidates.sum())} candidates over {plan.n_train} examples): use a larger "
                          "forget set")
    if sizes.max() == half:
        raise ConfigError(f"forget spec '{plan.forget}' covers member {int(sizes.argmax())}'s whole half: "
                          "its oracle would have no data")


def member_dataset(dataset: ImageDataset, rows: np.ndarray) -> ImageDataset:
    """The training rows `rows` of `dataset` (in that order) as a dataset of their own, with the same test part,
    preprocessing and recipe. Its fingerprint is its content; its record names the parent it came from."""
    index = torch.as_tensor(np.asarray(rows), dtype=torch.long)
    images = dataset.train_images[index.to(dataset.train_images.device)].clone()
    labels = dataset.train_labels[index.to(dataset.train_labels.device)].clone()
    source = {"name": f"{dataset.name}-pool", "root": None, "options": {},
              "parent": {"name": dataset.name, "fingerprint": dataset.fingerprint,
                         "loader": dataset.source.get("name")},
              "rows": content_key(index.tolist())}
    return ImageDataset(f"{dataset.name}-pool", images, labels, dataset.test_images, dataset.test_labels,
                        list(dataset.classes), dataset.mean, dataset.std, dataset.augment, source, dataset.recipe,
                        dataset.vectors)


# --------------------------------------------------------------------------------------------------- statistics

def model_statistics(model: torch.nn.Module, dataset: ImageDataset, runtime: Runtime) -> dict[str, np.ndarray]:
    """One model's per-example statistics on every training example of `dataset` (test-time transforms):
    "phi" = `logit_confidence` (U-LiRA's statistic), "phi_challenge" = the same with the challenge's guard 1e-45
    (its epsilon), "margin" = `margins` (KLOM's, the same number as phi by KLOM's definition), "correct" =
    whether the prediction is right, and "test_acc", the test accuracy in percent (the row's utility)."""
    logits, labels = predict(model, dataset.train(augment=False), runtime)
    test_logits, test_labels = predict(model, dataset.test(), runtime)
    with np.errstate(all="ignore"):  # overflowing logits give NaN here, which `finite` then reports
            return {"phi": logit_confidence(logits, labels),
                "phi_challenge": logit_confidence(logits, labels, guard=CHALLENGE_GUARD),
                "margin": margins(logits, labels), "correct": (logits.argmax(1) == labels).numpy(),
                "test_acc": np.float64(100.0 * (test_logits.argmax(1) == test_labels).double().mean().item())}


def finite(values: dict[str, np.ndarray]) -> bool:
    """Whether every statistic is finite: a model with NaN or infinite logits has nothing to audit."""
    return all(np.isfinite(values[name]).all() for name in ("phi", "phi_challenge", "margin"))


def statistics_path(store: Path, kind: str, key: str) -> Path:
    return Path(store) / "audit" / "statistics" / f"{kind.replace(':', '-')}-{key}.npz"


def save_statistics(path: Path, values: dict[str, np.ndarray]) -> None:
    """Write the .npz atomically: an interrupted job leaves no half-written file for the next run to trust."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **values)

    atomic_write_file(path, write)


def load_statistics(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as stored:
        return {name: stored[name] for name in stored.files}


def stored_statistics(path: Path) -> bool:
    """Whether statistics are stored at `path` and can be read back: a damaged or hand-edited file is computed
    again, with a warning, rather than failing the audit once every job has run."""
    if not path.exists():
        return False
    try:
        missing = set(STATISTICS) - set(load_statistics(path))
        problem = f"no {', '.join(sorted(missing))}" if missing else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        problem = str(exc) or type(exc).__name__
    if problem is None:
        return True
    warn_damaged(path, problem, "statistics file")
    return False


def _statistics_of_checkpoint(checkpoint_key: str, kind: str, dataset: ImageDataset, store: Path) -> Path:
    """Statistics of a stored model are keyed on the model's key and the data they are computed on."""
    return statistics_path(store, kind, content_key({"model": checkpoint_key, "data": dataset.fingerprint,
                                                     "statistics": STATISTICS_VERSION}))


def _job_runtime(device: str) -> Runtime:
    """The job's runtime: `device`, and the thread count torch really has here (the executor set it), so that
    the content keys say what ran in this process or worker."""
    return Runtime(torch.device(device), torch.get_num_threads())


# ------------------------------------------------------------------------------------------------------- jobs

def train_member(dataset: ImageDataset, spec: ModelSpec, recipe: TrainRecipe, plan: PoolPlan, k: int, kind: str,
                 device: str, store: Path) -> dict[str, Any]:
    """Job: member k's original or oracle, trained by `pipeline.train` (or found in the store), and its statistics
    on the full training set. Returns {"k", "kind", "key", "checkpoint", "statistics", "trained", "computed"}."""
    runtime = _job_runtime(device)
    data = member_dataset(dataset, plan.rows(k))
    split = plan.split(k, data) if kind == "oracle" else None
    started = time.time_ns()
    checkpoint = train(data, spec, recipe, plan.seeds[k], split, runtime, store)
    trained = (checkpoint.path / RECORD).stat().st_mtime_ns >= started  # written by this job, not found
    return _member_result(checkpoint, k, kind, dataset, runtime, store, trained)


def train_cohort(dataset: ImageDataset, spec: ModelSpec, recipe: TrainRecipe, plan: PoolPlan, members: list[int],
                 kind: str, device: str, store: Path) -> list[dict[str, Any]]:
    """Job: the originals (or oracles) of `members`, trained together as one vectorised pool (`train_pool`), or
    found in the store, each under a key of its own marked "trainer": "vectorised" with the cohort's seeds
    (vmap sums in another order than `fit`, so these are not the models `pipeline.train` would give)."""
    runtime = _job_runtime(device)
    datas = {k: member_dataset(dataset, plan.rows(k)) for k in members}
    splits = {k: plan.split(k, datas[k]) if kind == "oracle" else None for k in members}
    cohort = [plan.seeds[k] for k in members]
    folders = {k: _cohort_folder(datas[k], spec, recipe, plan.seeds[k], splits[k], kind, cohort, runtime, store)
               for k in members}
    missing = [k for k in members if not folders[k][1].exists()]
    if missing:
        subsets = [plan.rows(k)[splits[k].remain] if splits[k] is not None else plan.rows(k) for k in members]
        states = train_pool(dataset, spec, recipe, cohort, subsets, runtime, vectorised=True)
        for k, state in zip(members, states):
            if k in missing:
                _save_cohort_member(folders[k], datas[k], spec, recipe, plan.seeds[k], splits[k], kind, state,
                                    runtime)
    return [_member_result(load_checkpoint(folders[k][1]), k, kind, dataset, runtime, store, k in missing)
            for k in members]


def _cohort_folder(data: ImageDataset, spec: ModelSpec, recipe: TrainRecipe, seed: int, split: ForgetSplit | None,
                   kind: str, cohort: list[int], runtime: Runtime, store: Path) -> tuple[str, Path]:
    described = describe_model(spec)
    key = content_key({"kind": kind, "data": data.fingerprint, "model": described, "recipe": recipe.model_dump(),
                       "seed": seed, "split": split.fingerprint if split else None, "compute": runtime.identity(),
                       "trainer": "vectorised", "cohort": cohort})
    return key, Path(store) / "models" / f"{kind}-{data.name}-{described['name']}-{key}"


def _save_cohort_member(folder: tuple[str, Path], data: ImageDataset, spec: ModelSpec, recipe: TrainRecipe,
                        seed: int, split: ForgetSplit | None, kind: str, state: dict, runtime: Runtime) -> None:
    key, path = folder
    model = spec.build()
    model.load_state_dict(state)
    model.to(runtime.device)
    view = data.train(split.remain if split is not None else None)
    metrics = {"train_acc": accuracy(model, view, runtime), "test_acc": accuracy(model, data.test(), runtime)}
    if split is not None:
        metrics["forget_acc"] = accuracy(model, data.train(split.forget), runtime)
    record = {"kind": kind, "key": key, "seed": seed, "data": data.describe(), "model": describe_model(spec),
              "recipe": recipe.model_dump(), "split": split.describe() if split else None, "metrics": metrics,
              "trainer": "vectorised", "sample_passes": recipe.epochs * len(view), "device": str(runtime.device),
              "threads": runtime.threads}
    save_checkpoint(path, model, record, split)


def _member_result(checkpoint, k: int, kind: str, dataset: ImageDataset, runtime: Runtime, store: Path,
                   trained: bool) -> dict[str, Any]:
    key = checkpoint.record["key"]
    path = _statistics_of_checkpoint(key, kind, dataset, store)
    computed = not stored_statistics(path)
    if computed:
        values = model_statistics(checkpoint.load_model().to(runtime.device), dataset, runtime)
        if not finite(values):
            raise DivergenceError(f"the {kind} model of pool member {k} ({checkpoint.path}) gives NaN or infinite "
                                  f"logits: lower the recipe's lr (given {checkpoint.record['recipe']['lr']:g})")
        save_statistics(path, values)
    return {"k": k, "kind": kind, "key": key, "checkpoint": str(checkpoint.path), "statistics": str(path),
            "trained": trained, "computed": computed}


def unlearn_member(dataset: ImageDataset, spec: ModelSpec, recipe: TrainRecipe, plan: PoolPlan, k: int, method: str,
                   overrides: dict, resolved: dict, original: dict, device: str, store: Path) -> dict[str, Any]:
    """Job: member k's original unlearned with `method` (member k's split, recipe and seed), or its statistics
    found in the store under the key of original key + method + resolved hyperparameters + split + seed. The
    unlearned weights are not kept. A diverged run is a result: {"error": message}."""
    from ..unlearning.engine import unlearn

    runtime = _job_runtime(device)
    data = member_dataset(dataset, plan.rows(k))
    split = plan.split(k, data)
    key = content_key({"original": original["key"], "method": method, "hp": resolved, "split": split.fingerprint,
                       "seed": plan.seeds[k], "compute": runtime.identity(), "data": dataset.fingerprint,
                       "statistics": STATISTICS_VERSION})
    path = statistics_path(store, f"unlearned-{method}", key)
    result = {"k": k, "kind": method, "key": key, "statistics": str(path), "trained": False, "computed": False}
    if stored_statistics(path):
        return result
    model = load_checkpoint(original["checkpoint"]).load_model()
    try:
        done = unlearn(model, split, method, data=data, recipe=recipe, runtime=runtime, seed=plan.seeds[k],
                       store=store, **overrides)
    except DivergenceError as exc:
        return {**result, "error": f"member {k}: {exc}"}
    values = model_statistics(done.model, dataset, runtime)
    if not finite(values):  # finite weights can still overflow the logits
        return {**result, "error": f"member {k}: method '{method}' left a model whose logits are NaN or infinite"}
    save_statistics(path, values)
    return {**result, "trained": True, "computed": True}


# --------------------------------------------------------------------------------------------------------- pool

@dataclass
class Pool:
    """A trained pool: the plan, each kind's statistics stacked over members ({"phi": (K, N), ...}), the jobs'
    results (keys, paths, flags) and, per method, the first member error if one diverged."""

    plan: PoolPlan
    statistics: dict[str, dict[str, np.ndarray]]
    results: dict[str, list[dict[str, Any]]]
    errors: dict[str, str] = field(default_factory=dict)
    trainer: str = "per member"

    def describe(self) -> dict[str, Any]:
        members = [{"k": k, "seed": self.plan.seeds[k], "group": "A" if self.plan.group_a[k] else "B",
                    "original": self.results["original"][k]["key"], "oracle": self.results["oracle"][k]["key"]}
                   for k in range(self.plan.models)]
        return {**self.plan.describe(), "trainer": self.trainer, "members": members}

    def paths(self) -> dict[str, Any]:
        return {"models": {kind: [r["checkpoint"] for r in self.results[kind]] for kind in ("original", "oracle")},
                "statistics": {kind: [r["statistics"] for r in results] for kind, results in self.results.items()}}


def build_pool(dataset: ImageDataset, spec: ModelSpec, recipe: TrainRecipe, plan: PoolPlan,
               methods: dict[str, tuple[dict, dict]], executor: Executor, runtime: Runtime, store: Path,
               vectorised: bool | None = None) -> Pool:
    """Train (or find) the pool's originals and oracles, then unlearn every (member, method), all as jobs on
    `executor`. `methods` maps each name to (the user's overrides, the resolved hyperparameters). Originals and
    oracles train as vectorised cohorts when `vectorised` (default: `pool_is_vectorisable(spec, runtime)`)."""
    vectorised = pool_is_vectorisable(spec, runtime) if vectorised is None else vectorised
    common = {"dataset": dataset, "spec": spec, "recipe": recipe, "plan": plan, "device": str(runtime.device),
              "store": Path(store)}
    jobs = _training_jobs(plan, common, vectorised)
    trained = _flatten(executor.map(jobs, f"audit pool: {plan.models} originals and oracles"))
    results = {kind: sorted((r for r in trained if r["kind"] == kind), key=lambda r: r["k"])
               for kind in ("original", "oracle")}
    jobs = [Job(unlearn_member, {**common, "k": k, "method": name, "overrides": overrides, "resolved": resolved,
                                 "original": results["original"][k]}, f"{name} member {k}")
            for name, (overrides, resolved) in methods.items() for k in range(plan.models)]
    unlearned = executor.map(jobs, f"audit pool: {len(methods)} method(s) x {plan.models} members")
    errors: dict[str, str] = {}
    for name in methods:
        results[name] = [r for r in unlearned if r["kind"] == name]
        failed = [r["error"] for r in results[name] if "error" in r]
        if failed:
            errors[name] = failed[0]
    statistics = {kind: _stacked(rows) for kind, rows in results.items() if kind not in errors}
    return Pool(plan, statistics, results, errors, "vectorised" if vectorised else "per member")


def _training_jobs(plan: PoolPlan, common: dict, vectorised: bool) -> list[Job]:
    """Originals (equal halves: one cohort) and oracles (cohorts of equal remain size, as train_pool needs);
    a cohort of one, or any member when not vectorised, trains by `pipeline.train` in a job of its own."""
    cohorts: list[tuple[str, list[int]]] = []
    if vectorised:
        cohorts.append(("original", list(range(plan.models))))
        sizes = plan.halves.sum(1) - plan.forget_masks.sum(1)
        for size in np.unique(sizes):
            cohorts.append(("oracle", [int(k) for k in np.flatnonzero(sizes == size)]))
    else:
        cohorts = [(kind, [k]) for kind in ("original", "oracle") for k in range(plan.models)]
    jobs = []
    for kind, members in cohorts:
        if len(members) == 1:
            jobs.append(Job(train_member, {**common, "k": members[0], "kind": kind}, f"{kind} member {members[0]}"))
        else:
            jobs.append(Job(train_cohort, {**common, "members": members, "kind": kind},
                            f"{kind} cohort of {len(members)}"))
    return jobs


def _flatten(results: list) -> list[dict[str, Any]]:
    return [r for item in results for r in (item if isinstance(item, list) else [item])]


def _stacked(results: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    loaded = [load_statistics(r["statistics"]) for r in results]
    return {name: np.stack([values[name] for values in loaded]) for name in loaded[0]}
