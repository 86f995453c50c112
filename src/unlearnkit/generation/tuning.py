"""`unlearnkit tune --task generation`: each generation method's hyperparameters chosen against the oracle DDPM.

The scenario is the bench's (one forgotten class, one denoiser), on a tuning seed the bench does not report.
The space is each method's `search` grid; Optuna's TPE searches it (a grid no larger than `max_trials` is tried
whole), in a journal file under the output folder, so an interrupted search resumes. Objective: Avg.Gap to the
oracle, the mean of |FA - FA_oracle| and |RA - RA_oracle| of the samples (percentage points); trials whose sample
passes exceed `max_cost` of the oracle's training do not compete. Writes tuning.md, trials.csv and best.json.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..artifacts import atomic_write_rows, atomic_write_text, content_key
from ..bench.tuning import grid, import_optuna
from ..errors import ConfigError, DivergenceError
from ..progress import task
from ..runtime import Runtime
from .bench import bench_setup
from .engine import unlearn_generation
from .methods import GENERATION_METHODS
from .training import load_denoiser

JOURNAL = "optuna.journal"


def tune_generation(out_dir: Path, runtime: Runtime, store: Path, seed: int = 100, forget_class: int = 0,
                    methods: list[str] | None = None, max_trials: int = 12, max_cost: float = 0.5,
                    denoiser: str = "unet", quick: bool = True, data: str = "digits") -> dict:
    """Tune `methods` (default: every generation method with a search space); returns {"best", "summary",
    "trials", "best_file"}. `quick` trains and samples as `bench --quick` does."""
    optuna = import_optuna()
    methods = methods or [n for n, m in GENERATION_METHODS.items() if m.search]
    for name in methods:
        if not GENERATION_METHODS.get(name).search:
            raise ConfigError(f"generation method '{name}' declares no search space to tune")
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset, split, recipe, spec, original, oracle, evaluator = bench_setup(
        data, None, forget_class, denoiser, seed, quick, runtime, store)
    model, schedule = load_denoiser(oracle)
    oracle_scores = evaluator.score(model.to(runtime.device), schedule)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out_dir / JOURNAL)))
    identity = content_key({"original": original.record["key"], "oracle": oracle.record["key"],
                            "budget": evaluator.budget.describe()})
    rows, best = [], {}
    for name in methods:
        space = GENERATION_METHODS.get(name).search
        points = grid(space)
        study = optuna.create_study(storage=storage, study_name=f"{name}/{identity}", direction="minimize",
                                    load_if_exists=True,
                                    sampler=(optuna.samplers.GridSampler(space, seed=seed) if len(points) <= max_trials
                                             else optuna.samplers.TPESampler(seed=seed)))
        wanted = min(max_trials, len(points))
        done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        with task(f"tune {name}", total=wanted) as advance:
            advance(len(done))
            for _ in range(wanted - len(done)):
                trial = study.ask()
                hp = {k: trial.suggest_categorical(k, v) for k, v in sorted(space.items())}
                figures = _trial(name, hp, original, split, dataset, schedule, evaluator, oracle_scores, oracle,
                                 runtime, seed, store)
                trial.set_user_attr("figures", figures)
                allowed = figures.get("avg_gap") is not None and figures["cost_ratio"] <= max_cost
                study.tell(trial, figures["avg_gap"] if allowed else float("inf"))
                advance(info=f"avg_gap {figures.get('avg_gap')}")
        trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        for t in trials:
            rows.append({"method": name, **t.params, **t.user_attrs.get("figures", {})})
        scored = [t for t in trials if t.value is not None and t.value != float("inf")]
        if scored:
            chosen = min(scored, key=lambda t: t.value)
            best[name] = {"hp": chosen.params, **chosen.user_attrs["figures"]}
    files = {"summary": out_dir / "tuning.md", "trials": out_dir / "trials.csv", "best_file": out_dir / "best.json"}
    atomic_write_rows(files["trials"], rows)
    settings = {"seed": seed, "forget_class": forget_class, "denoiser": denoiser, "quick": quick,
                "max_trials": max_trials, "max_cost": max_cost, "oracle": {"forget_acc": oracle_scores.forget_accuracy,
                                                                          "remain_acc": oracle_scores.remain_accuracy,
                                                                          "fid": oracle_scores.fid}}
    atomic_write_text(files["best_file"], json.dumps({"settings": settings, "best": best}, indent=2, default=str))
    atomic_write_text(files["summary"], _markdown(best, settings))
    return {"best": {m: b["hp"] for m, b in best.items()}, **{k: str(v) for k, v in files.items()}}


def _trial(name, hp, original, split, dataset, schedule, evaluator, oracle_scores, oracle, runtime, seed, store):
    model, _ = load_denoiser(original)
    begin = time.perf_counter()
    try:
        result = unlearn_generation(model.to(runtime.device), split, name, data=dataset, schedule=schedule,
                                    runtime=runtime, seed=seed, store=store, **hp)
    except DivergenceError as exc:
        return {"avg_gap": None, "cost_ratio": None, "error": str(exc)}
    figures = evaluator.against(evaluator.score(result.model, schedule), oracle_scores)
    figures.pop("gaps")
    return {**figures, "cost_ratio": result.sample_passes / oracle.record["sample_passes"],
            "rte_s": time.perf_counter() - begin}


def _markdown(best: dict, settings: dict) -> str:
    o = settings["oracle"]
    lines = [f"# Generation tuning: class {settings['forget_class']}, {settings['denoiser']} denoiser, tuning seed "
             f"{settings['seed']}{' (quick)' if settings['quick'] else ''}", "",
             f"Oracle: FA {o['forget_acc']:.2f}%, RA {o['remain_acc']:.2f}%, FID* {o['fid']:.2f}. Objective: Avg.Gap "
             f"(mean |ΔFA|, |ΔRA|), among trials costing ≤ {settings['max_cost']} of the oracle's sample passes.", "",
             "| method | chosen | FA % | RA % | FID* | Avg.Gap | KL | cost |", "|---|---|---|---|---|---|---|---|"]
    for name, b in best.items():
        chosen = ", ".join(f"{k}={v}" for k, v in b["hp"].items())
        lines.append(f"| {name} | {chosen} | {b['forget_acc']:.2f} | {b['remain_acc']:.2f} | {b['fid']:.2f} | "
                     f"{b['avg_gap']:.2f} | {b['kl_forget']:.3f} | {b['cost_ratio']:.2f} |")
    return "\n".join(lines) + "\n"
