"""The per-example audit of unlearning methods over a pool of models (`run_audit`), and the command behind
`unlearnkit audit` (`audit_command`).

Every row is one kind of model of the pool (`pools.py`): a method's unlearned models, or one of two sanity rows,
"oracle" (the oracles treated as if a method had produced them: must be at chance) and "original" (the originals,
nothing unlearned: must be clearly above chance, or the pool is too weak to see anything). Each row computes, on
the candidates F* only (the examples some members forget):

- U-LiRA (`statistics.ulira`, online and offline) on the row's models' phi (K, |F*|): positives are (k, n) with
  n in member k's forget set, negatives (k, n) with n outside member k's half; leave one model out.
- The NeurIPS 2023 challenge's epsilon per candidate (`statistics.challenge_epsilons` on phi with the challenge's
  guard) between the row's models of group A that forgot n and the oracles of group B that forgot n: K/4 and K/4
  models, for every candidate. The forget score F is `challenge_points` (num_models = K/4) averaged over F*.
- KLOM per candidate (`statistics.klom` on the margins), the same two sets of models; `klom_summary`.

Why two groups: the oracle row compares oracles with oracles, which must be different models (identical pools
score epsilon 0 by construction), and every row uses the same split so that their numbers are comparable; it
also keeps a member's unlearned model and its own oracle (same seed, same remain data) off opposite sides.
Why "the oracles of B that forgot n" rather than every oracle of B (none of which saw n): both sides then hold
K/4 models that trained on half_k \\ F* with n in half_k, the same condition, and the same number of models.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifacts import content_key, writable_store
from ..config import TrainRecipe, as_recipe
from ..data.images import ImageDataset
from ..errors import ConfigError
from ..executor import Executor, make_executor
from ..models import ModelSpec
from ..runtime import Runtime, check_seed
from .pools import SANITY_ROWS, PoolPlan, build_pool, check_models, plan_pool
from .statistics import (
    ULiRAResult,
    best_accuracy,
    challenge_epsilons,
    challenge_points,
    klom,
    klom_summary,
    roc,
    tpr_at_fpr,
    ulira_scores,
)

SUMMARY_KEYS = ("method", "auc", "tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr", "epsilon", "forget_score", "klom",
                "klom_mean", "offline_auc", "offline_tpr_at_1pct_fpr", "offline_tpr_at_0p1pct_fpr", "best_accuracy",
                "pairs", "epsilon_undefined", "test_acc", "forget_acc", "error")
FLAG_FPR = 0.01  # the FPR at which the report counts how often each example is flagged
CHALLENGE_MIN_MODELS = 3  # the scorer's buckets end at ceil(ln(K_u - 1)): with 2 models there are none


# --------------------------------------------------------------------------------------------------------- rows

def per_side(values: np.ndarray, mask: np.ndarray, count: int) -> np.ndarray:
    """For each column n, the `count` values of the rows where mask[:, n] (in row order): (count, N). The pool's
    plan guarantees every candidate exactly `count` such rows; anything else is a bug, not a user error."""
    have = mask.sum(0)
    if (have != count).any():
        raise AssertionError(f"expected {count} models per candidate, found {have.min()}..{have.max()}")
    order = np.argsort(~mask, axis=0, kind="stable")[:count]
    return np.take_along_axis(values, order, axis=0)


def ulira_leave_pair_out(statistic: np.ndarray, unlearned: np.ndarray, unseen: np.ndarray, *, online: bool = True
                         ) -> ULiRAResult:
    """`statistics.ulira` (same scores, pairs, ROC and summaries, LiRA's defaults), except that target k's
    shadows are the members of the other pairs: k's partner (k XOR 1) is left out with it.

    Why: the partner trained on the complement of k's half, so with it among the shadows a target that trained
    on n has K/2 - 1 IN shadows and K/2 OUT ones, and a target that did not the reverse. With few shadows the fit
    from fewer samples is the worse fit to a fresh value (ddof-0 spread, median), which alone pushes positives
    down: the oracle row read AUC 0.40-0.50 at K = 8. Without the partner every target has K/2 - 1 of each.
    """
    n_models = statistic.shape[0]
    scores, labels, targets, examples = [], [], [], []
    for k in range(n_models):
        cols = np.flatnonzero(unlearned[k] | unseen[k])
        others = (np.arange(n_models) != k) & (np.arange(n_models) != (k ^ 1))
        s = ulira_scores(statistic[k], statistic[others], unlearned[others], unseen[others], online=online)[cols]
        good = ~np.isnan(s)
        scores.append(s[good])
        labels.append(unlearned[k, cols[good]])
        targets.append(np.full(int(good.sum()), k))
        examples.append(cols[good])
    big = np.finfo(np.float64).max  # as ulira: a zero-variance fit's +-inf keeps its order, not its value
    score = np.nan_to_num(np.concatenate(scores), posinf=big, neginf=-big)
    label = np.concatenate(labels)
    skipped = int((unlearned | unseen).sum()) - len(score)
    curve = roc(score, label)
    return ULiRAResult(score, label, np.concatenate(targets), np.concatenate(examples), skipped, curve.auc,
                       tpr_at_fpr(curve.fpr, curve.tpr, 0.01), tpr_at_fpr(curve.fpr, curve.tpr, 0.001),
                       best_accuracy(curve.fpr, curve.tpr))


def _epsilons(unlearned: np.ndarray, retrained: np.ndarray) -> np.ndarray:
    """Per-example challenge epsilon; NaN for an example where no rule survives (e.g. every value identical,
    where the scorer's own check fails), rather than losing the whole row to one example."""
    try:
        return challenge_epsilons(unlearned, retrained)
    except ConfigError:
        out = np.empty(unlearned.shape[1])
        for n in range(unlearned.shape[1]):
            try:
                out[n] = challenge_epsilons(unlearned[:, n:n + 1], retrained[:, n:n + 1])[0]
            except ConfigError:
                out[n] = np.nan
        return out


def _exposure(result: ULiRAResult, curve, n_candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate: the mean online U-LiRA score over the targets that forgot it, and the fraction of those
    targets an attacker flags at FLAG_FPR (the threshold of the pooled ROC `curve`)."""
    threshold = curve.thresholds[np.flatnonzero(curve.fpr < FLAG_FPR)[-1]]
    positive = result.labels
    examples = result.examples[positive]
    scores = np.clip(result.scores[positive], -1e6, 1e6)  # a zero-variance fit must not overflow the mean
    count = np.bincount(examples, minlength=n_candidates).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(examples, scores, minlength=n_candidates) / count
        flagged = np.bincount(examples, result.scores[positive] >= threshold, minlength=n_candidates) / count
    return mean, flagged


def audit_row(name: str, stats: dict[str, np.ndarray], oracle: dict[str, np.ndarray], plan: PoolPlan) -> dict:
    """One row of the audit: the summaries of SUMMARY_KEYS, and under "arrays" the per-candidate values
    (training indices, epsilon, KLOM, U-LiRA exposure and flagged fraction) and the online ROC, for the report."""
    cols = plan.candidate_index
    forgot, unseen = plan.forget_masks[:, cols], ~plan.halves[:, cols]
    online = ulira_leave_pair_out(stats["phi"][:, cols], forgot, unseen)
    offline = ulira_leave_pair_out(stats["phi"][:, cols], forgot, unseen, online=False)
    a, b, side = plan.group_a, ~plan.group_a, plan.per_side
    eps = _epsilons(per_side(stats["phi_challenge"][a][:, cols], forgot[a], side),
                    per_side(oracle["phi_challenge"][b][:, cols], forgot[b], side))
    kl = klom(per_side(stats["margin"][a][:, cols], forgot[a], side),
              per_side(oracle["margin"][b][:, cols], forgot[b], side))
    forget_score = float(challenge_points(eps, side).mean()) if side >= CHALLENGE_MIN_MODELS else float("nan")
    curve = roc(online.scores, online.labels)
    exposure, flagged = _exposure(online, curve, len(cols))
    kl_summary = klom_summary(kl)
    row = {"method": name, **online.summary, "epsilon": float(np.nanmean(eps)) if (~np.isnan(eps)).any() else None,
           "forget_score": forget_score, "klom": kl_summary["p95"], "klom_mean": kl_summary["mean"],
           "offline_auc": offline.auc, "offline_tpr_at_1pct_fpr": offline.tpr_at_1pct_fpr,
           "offline_tpr_at_0p1pct_fpr": offline.tpr_at_0p1pct_fpr, "best_accuracy": online.accuracy,
           "pairs": int(len(online.scores)), "epsilon_undefined": int(np.isnan(eps).sum()),
           "test_acc": float(stats["test_acc"].mean()),
           "forget_acc": float(100.0 * stats["correct"][plan.forget_masks].mean()), "error": None}
    row["arrays"] = {"examples": cols, "epsilon": eps, "klom": kl, "exposure": exposure, "flagged": flagged,
                     "roc_fpr": curve.fpr, "roc_tpr": curve.tpr}
    return row


def error_row(name: str, message: str) -> dict:
    return {**{key: None for key in SUMMARY_KEYS}, "method": name, "error": message, "arrays": None}


# ------------------------------------------------------------------------------------------------------- inputs

def checked_methods(methods: Sequence[str] | str, hyperparameters: dict | None, forget: str
                    ) -> dict[str, tuple[dict, dict]]:
    """Each method with (the user's overrides, every hyperparameter resolved for `forget`), or one ConfigError."""
    from ..unlearning.methods import METHODS

    if isinstance(methods, str):
        names = [m.strip() for m in methods.split(",") if m.strip()]
    else:
        names = list(methods or [])
    if len(set(names)) != len(names):
        raise ConfigError(f"methods lists a method twice: {', '.join(names)}")
    hyperparameters = dict(hyperparameters or {})
    unknown = sorted(set(hyperparameters) - set(names))
    if unknown:
        raise ConfigError(f"hyperparameters are given for method(s) {unknown} that the audit does not run "
                          f"({', '.join(names) or 'none'})")
    checked = {}
    for name in names:
        if name in SANITY_ROWS:
            raise ConfigError(f"'{name}' is a sanity row every audit has; it is not a method to list")
        overrides = dict(hyperparameters.get(name) or {})
        checked[name] = (overrides, METHODS.get(name).resolve(overrides, forget))
    return checked


def _executor(executor: Executor | str | None) -> tuple[Executor, bool]:
    """An Executor, and whether it is ours to close (made here from a name)."""
    if isinstance(executor, Executor):
        return executor, False
    return make_executor(executor or "local"), True


# -------------------------------------------------------------------------------------------------------- audit

def run_audit(dataset: ImageDataset, model_spec: ModelSpec, recipe: TrainRecipe | dict | None, forget: str,
              methods: Sequence[str] | str, models: int = 16, seed: int = 0, executor: Executor | str | None = None,
              store: str | Path | None = None, runtime: Runtime | None = None, hyperparameters: dict | None = None,
              vectorised: bool | None = None) -> dict[str, Any]:
    """Audit `methods` on a pool of `models` members for `forget` over `dataset` (module docstring).

    `recipe` trains every original and oracle (default: the dataset's); `executor` runs the jobs (an Executor,
    or "local" / "ray"); `hyperparameters` maps a method to its overrides; `vectorised` forces the pool trainer
    (default: `pool_is_vectorisable`). Everything is found in the store when it is there.

    Returns {"rows": every method's row, then "oracle" and "original" (see `audit_row`; `report.summary` strips
    the arrays), "pool": the plan and the members' keys, "paths": models and statistics, "key": the audit's content
    key, "plan": the PoolPlan, "jobs": each kind's job results, with "trained" and "computed" flags saying what
    this call trained and computed rather than found, "config": the data, model, recipe, every method's resolved
    hyperparameters and the compute it ran with}.
    """
    if not isinstance(forget, str):
        raise ConfigError(f"a forget spec is a string such as random:0.1 or class:3, got {forget!r}")
    if not isinstance(model_spec, ModelSpec):  # every member builds its own model from the spec
        raise ConfigError(f"the audit trains its pool from a ModelSpec (uk.spec_for('mlp', data)), got "
                          f"{type(model_spec).__name__}")
    checked = checked_methods(methods, hyperparameters, forget)
    plan = plan_pool(dataset, forget, models, seed)
    recipe = as_recipe(recipe, dataset.recipe)
    runtime = runtime or Runtime.create()
    store = writable_store(store)
    executor, owned = _executor(executor)
    try:
        pool = build_pool(dataset, model_spec, recipe, plan, checked, executor, runtime, store, vectorised)
    finally:
        if owned:
            executor.close()
    rows = [error_row(name, pool.errors[name]) if name in pool.errors
            else audit_row(name, pool.statistics[name], pool.statistics["oracle"], plan) for name in checked]
    rows += [audit_row(name, pool.statistics[name], pool.statistics["oracle"], plan) for name in SANITY_ROWS]
    key = audit_key(dataset, model_spec, recipe, plan, checked, runtime)
    config = {"data": dataset.describe(), "model": model_spec.describe(), "recipe": recipe.model_dump(),
              "hyperparameters": {m: hp for m, (_, hp) in checked.items()}, "compute": runtime.identity()}
    return {"rows": rows, "pool": pool.describe(), "paths": {"store": str(store), **pool.paths()}, "key": key,
            "plan": plan, "jobs": pool.results, "config": config}


def audit_key(dataset: ImageDataset, spec: ModelSpec, recipe: TrainRecipe, plan: PoolPlan,
              methods: dict[str, tuple[dict, dict]], runtime: Runtime) -> str:
    return content_key({"data": dataset.fingerprint, "model": spec.describe(), "recipe": recipe.model_dump(),
                        "pool": plan.describe()["key"], "forget": plan.forget, "models": plan.models,
                        "seed": plan.seed, "methods": {m: hp for m, (_, hp) in methods.items()},
                        "compute": runtime.identity()})


def audit_command(data: str = "digits", root: str | None = None, model: str | None = None,
                  forget: str = "random:0.1", methods: Sequence[str] | str = "sfron,ft", models: int = 16,
                  seed: int = 0, executor: str = "local", address: str | None = None, cpus_per_job: float = 1.0,
                  gpus_per_job: float = 0.0, store: str | Path | None = None, device: str = "auto",
                  threads: int | None = None, hyperparameters: dict | None = None,
                  recipe: dict | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """`unlearnkit audit`: load dataset `data` (its default model unless `model` is given, and its recipe with
    the `recipe` overrides, e.g. {"epochs": 5}), run the audit on `executor`, and write report.html, rows.json and
    rows.md into <store>/audit/<audit key>/.
    Returns {"rows": the summaries, "report", "markdown", "json": the files' paths, "pool": the pool, "note": a
    line when the pool is too small for ε and KLOM (`report.small_pool_note`), else None}."""
    from ..data.datasets import DATASETS, load_dataset
    from ..models import spec_for
    from .report import small_pool_note, summary, write_report

    if not isinstance(forget, str):
        raise ConfigError(f"a forget spec is a string such as random:0.1 or class:3, got {forget!r}")
    checked_methods(methods, hyperparameters, forget)  # bad inputs fail before the data loads or Ray starts
    check_models(models)
    check_seed(seed, "the pool seed")
    runtime = Runtime.create(device, threads)
    store = writable_store(store)
    dataset = load_dataset(data, root)
    spec = spec_for(model or DATASETS.get(data).default_model, dataset)
    given = {"--root": root, "--model": model, "--epochs": (recipe or {}).get("epochs")}  # for the command line
    recipe = DATASETS.get(data).recipe.with_overrides(recipe or {})
    with make_executor(executor, address, cpus_per_job, gpus_per_job, threads, num_cpus) as runner:
        result = run_audit(dataset, spec, recipe, forget, methods, models, seed, runner, store, runtime,
                           hyperparameters)
    folder = Path(store) / "audit" / result["key"]
    command = " ".join([f"unlearnkit audit --data {data}", *(f"{flag} {value}" for flag, value in given.items()
                                                             if value is not None),
                        f"--forget {forget} --methods {methods if isinstance(methods, str) else ','.join(methods)} "
                        f"--models {models} --seed {seed} --executor {executor}"])
    paths = write_report(result, dataset, folder, command)
    return {"rows": [summary(r) for r in result["rows"]], **{k: str(v) for k, v in paths.items()},
            "pool": result["pool"], "note": small_pool_note(result["pool"])}
