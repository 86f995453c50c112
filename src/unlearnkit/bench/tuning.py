"""`tune`: choose each method's hyperparameters per scenario against the oracle, with Optuna.

The search runs on seeds the reported bench does not use, and averages over them. Objective: the
scenario's `objective`: by default "relative", Avg.Gap and KL(oracle ‖ model) on the forget set each divided
by the original model's (what doing nothing scores) and summed; or Avg.Gap alone, or KL alone where Avg.Gap
cannot rank. Only trials whose compute stays within `max_cost` of retraining's (sample passes) compete, so
that no method buys its score with a retraining's budget.

One Optuna study per scenario and method, in a journal file under the output folder that parallel workers
share. A method's `search` (with the scenario's over it) is the space: each hyperparameter a categorical
choice among its listed values. A grid no larger than `max_trials` is enumerated whole (sampling could only
miss or repeat points); a larger one is searched by TPE for `max_trials` trials. Trials are asked in batches,
run as jobs on an executor (in this process, or on Ray) and told back. Every trial's run on a seed is stored
like a bench cell, and every told trial is in the journal, so an interrupted search resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import random
import socket
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from ..artifacts import atomic_write_text, content_key, writable_store
from ..data.images import ImageDataset
from ..errors import ConfigError, DivergenceError
from ..evaluation.protocol import evaluate
from ..executor import Executor, InProcess, Job
from ..progress import task
from ..runtime import Runtime, check_seeds
from ..unlearning.engine import unlearn
from ..unlearning.methods import METHODS
from .runner import NOTHING_DONE, References, Setup, cached_cell, check_threads, checked_scenarios, reference_models
from .scenarios import BenchConfig, Scenario

# What a trial reports, averaged over the tuning seeds (None where it diverged); "relative" is derived from them.
TRIAL_METRICS = ("avg_gap", "kl_forget", "forget_acc", "cost_ratio", "rte_s")
JOURNAL = "optuna.journal"  # every study of an output folder, shared by the workers that tune into it
STARTUP = 10  # trials of a study before TPE models the results (TPE's default); distinct grid points
_INSTALL = "pip install unlearnkit[tune]"
_CHOICE_TYPES = (type(None), bool, int, float, str)  # what an Optuna categorical choice may be


def grid(space: dict[str, list]) -> list[dict]:
    """Every combination of the candidate values (keys in sorted order)."""
    keys = sorted(space)
    return [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]


def search_space(scenario: Scenario, name: str) -> dict[str, list]:
    """The method's declared candidate values, with the scenario's own over them."""
    return {**METHODS.get(name).search, **scenario.search.get(name, {})}


def tune(config: BenchConfig, methods: list[str], seeds: list[int], runtime: Runtime, out_dir: Path,
         store: Path | None = None, max_trials: int = 60, max_cost: float = 0.5, executor: Executor | None = None,
         provided: dict[str, tuple] | None = None, n_parallel: int | None = None) -> dict:
    """Search each method's space on each scenario, averaged over the tuning `seeds`, and keep the best trial
    per scenario and method among those within the scenario's budget (and its forget-accuracy limit, if any).
    When none qualifies, the one closest to qualifying is kept and flagged with what it misses, rather than
    dropped (a method whose cost no setting changes, such as Fisher forgetting); such a flagged choice is reported
    but never written to a bench or tuned-defaults file (`best_by_spec`, `write_bench_file`).

    `max_trials`: Optuna trials per scenario and method. `executor` runs the trainings and trials (default: in
    this process); `n_parallel` trials of each study are asked at once (default: one in this process, else
    enough to fill the executor's CPUs). `provided` maps scenario names to a user's own (dataset, model spec,
    recipe), as in the bench. Returns the chosen trials ("best"), every trial ("trials") and `out_dir`."""
    seeds = check_seeds(seeds, "tune()'s seeds")
    reported = sorted(set(seeds) & set(config.seeds))
    if reported:
        raise ConfigError(f"tuning seed(s) {reported} are among the bench's reported seeds {config.seeds}: use others")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ConfigError(f"max_trials must be at least 1, got {max_trials!r}")
    # A negative budget keeps no trial: every choice would be flagged and none written, with no word of why.
    if isinstance(max_cost, bool) or not isinstance(max_cost, (int, float)) or not max_cost >= 0:
        raise ConfigError(f"max_cost must be a share of retraining's compute, >= 0, got {max_cost!r}")
    if n_parallel is not None and n_parallel < 1:
        raise ConfigError(f"n_parallel must be at least 1, got {n_parallel}")
    spaces = {(s.name, name): checked_space(s, name) for s in config.scenarios for name in methods}
    optuna = import_optuna()
    loaded = checked_scenarios(config, methods, provided)
    executor = executor or InProcess()
    check_threads(executor, runtime)
    store = writable_store(store)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    references = reference_models(config.scenarios, loaded, seeds, runtime, store, executor)
    work = _Work(config, loaded, references, seeds, runtime, out_dir, store, executor)
    nothing = _doing_nothing(work)
    with _quiet(optuna):
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out_dir / JOURNAL)))
        searches = [_open(optuna, storage, work, s, name, spaces[s.name, name], max_trials, max_cost)
                    for s in config.scenarios for name in methods]
        per_study = n_parallel or _fill(executor, len(searches) * len(seeds))
        _run(optuna, searches, per_study, work, nothing)
        trials = [row for search in searches for row in search.rows(optuna)]
    best = _choose(searches, trials)
    _write(trials, best, out_dir, seeds, max_cost, {
        s.name: s.objective + (f", cost ≤ {s.max_cost}" if s.max_cost else "")
        + (f", forget accuracy ≤ {s.max_forget_acc}%" if s.max_forget_acc is not None else "")
        for s in config.scenarios})
    return {"best": best, "trials": trials, "out_dir": out_dir}


def checked_space(scenario: Scenario, name: str) -> dict[str, list]:
    """The space, with every grid point resolved against the method's typed settings: a wrong name, type or
    range is one ConfigError line before anything runs."""
    space = search_space(scenario, name)
    if not space:
        raise ConfigError(f"method '{name}' declares no search space")
    for key, values in space.items():
        if not values:
            raise ConfigError(f"scenario '{scenario.name}': the search of '{name}' lists no values for '{key}'")
        odd = [v for v in values if not isinstance(v, _CHOICE_TYPES)]
        if odd:
            raise ConfigError(f"scenario '{scenario.name}': the search of '{name}' for '{key}' may list numbers, "
                              f"strings, booleans or null, got {odd[0]!r}")
    for point in grid(space):
        METHODS.get(name).resolve(point, scenario.forget)
    return space


def import_optuna():
    try:
        import optuna
        import optuna.storages.journal  # noqa: F401 - JournalFileBackend: Optuna 4.0 and later
    except ImportError:
        raise ConfigError(f"tuning needs optuna>=4.0, which is not installed: {_INSTALL}") from None
    if not hasattr(optuna.storages.journal, "JournalFileBackend"):
        raise ConfigError(f"tuning needs optuna>=4.0, found {optuna.__version__}: {_INSTALL}")
    return optuna


@contextlib.contextmanager
def _quiet(optuna):
    """Optuna logs every trial at INFO; the progress bar and tuning.md say it once."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _fill(executor: Executor, jobs_per_trial_round: int) -> int:
    """Trials per study asked at once by default: one in this process (each trial learns from all before it);
    elsewhere enough for one round of every study on every seed to fill the executor's CPUs."""
    if isinstance(executor, InProcess):
        return 1
    cpus = getattr(executor, "num_cpus", None) or os.cpu_count() or 1
    slots = max(1, int(cpus // getattr(executor, "cpus_per_job", 1.0)))
    return max(1, math.ceil(slots / jobs_per_trial_round))


@dataclass(frozen=True)
class _Work:
    """What every trial job of one `tune` call is made from."""

    config: BenchConfig
    loaded: dict[str, tuple]
    references: dict[tuple[str, int], References]
    seeds: list[int]
    runtime: Runtime
    out_dir: Path
    store: Path
    executor: Executor

    def setup(self, scenario: str, seed: int) -> Setup:
        refs = self.references[scenario, seed]
        return Setup(scenario, seed, refs.split, refs.original, refs.oracle, self.runtime, self.config.mia,
                     (self.config.mia,))  # tuning measures the one attack Avg.Gap uses


@dataclass
class _Search:
    """One study: a scenario, a method, its space and its budget."""

    scenario: Scenario
    method: str
    space: dict[str, list]
    study: Any
    max_trials: int
    cap: float

    @property
    def exhaustive(self) -> bool:
        return len(grid(self.space)) <= self.max_trials

    def distributions(self, optuna) -> dict:
        return {k: optuna.distributions.CategoricalDistribution(v) for k, v in sorted(self.space.items())}

    def remaining(self, optuna) -> int:
        """Trials still to ask: the queued grid points, or what the budget leaves after the trials told or in
        flight (a parallel worker's count too)."""
        trials = self.study.get_trials(deepcopy=False)
        if self.exhaustive:
            return sum(1 for t in trials if t.state == optuna.trial.TrialState.WAITING)
        return self.max_trials - sum(1 for t in trials if _spent(optuna, t))

    def rows(self, optuna) -> list[dict]:
        """Every evaluated trial of the study (this run's and earlier runs'), in trial order."""
        return [{"scenario": self.scenario.name, "method": self.method, "trial": t.number, "hp": dict(t.params),
                 **t.user_attrs["metrics"]}
                for t in self.study.get_trials(deepcopy=False) if "metrics" in t.user_attrs]


def _spent(optuna, trial) -> bool:
    """A trial that used budget: evaluated (told, diverged or not) or running now."""
    return "metrics" in trial.user_attrs or trial.state == optuna.trial.TrialState.RUNNING


def _open(optuna, storage, work: _Work, scenario: Scenario, name: str, space: dict[str, list], max_trials: int,
          max_cost: float) -> _Search:
    """The study of `name` on `scenario`, created or found: its name carries the key of everything its trials'
    values depend on, so a changed space, model, seed or default starts a new study rather than mixing."""
    refs = [work.references[scenario.name, seed] for seed in work.seeds]
    key = content_key({"method": name, "defaults": METHODS.get(name).resolve({}, scenario.forget), "space": space,
                       "objective": scenario.objective, "mia": work.config.mia, "compute": work.runtime.identity(),
                       "models": [(r.original.record["key"], r.oracle.record["key"]) for r in refs]})
    found = optuna.create_study(storage=storage, study_name=f"{scenario.name}/{name}/{key}", direction="minimize",
                                load_if_exists=True)
    # A resumed study draws from another seed than its first run did, not the same settings again.
    seed = work.seeds[0] + len(found.get_trials(deepcopy=False))
    study = optuna.load_study(study_name=found.study_name, storage=storage, sampler=_sampler(optuna, seed))
    search = _Search(scenario, name, space, study, max_trials,
                     max_cost if scenario.max_cost is None else scenario.max_cost)
    _fail_stale(optuna, study)
    _queue(optuna, search, seed)
    return search


def _sampler(optuna, seed: int):
    # The constant liar keeps the trials of one batch apart. Constraints: Trial.set_constraint from Optuna 5,
    # the sampler's constraints_func (read from the trial's attributes) before.
    options = {"seed": seed, "constant_liar": True, "n_startup_trials": STARTUP}
    if not hasattr(optuna.trial.Trial, "set_constraint"):
        options["constraints_func"] = _constraints_of
    with warnings.catch_warnings():  # both are marked experimental before Optuna 5: a warning per study
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(**options)


def _constraints_of(trial) -> list[float]:
    return trial.user_attrs.get("constraints", [0.0])


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _fail_stale(optuna, study) -> None:
    """Trials left running by a process of this host that is gone (killed mid-batch) are failed, so that they
    neither hold budget nor stand in the sampler's way; a live worker's trials are left alone."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        where, _, pid = str(trial.user_attrs.get("owner", "")).rpartition(":")
        if where == host and pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _queue(optuna, search: _Search, seed: int) -> None:
    """Queue the grid points the study is to try first: all of a grid that fits the trials; else TPE's random
    start-up trials, drawn here without replacement (TPE's own draws may repeat a point of a small grid)."""
    states = (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    taken = [t.system_attrs.get("fixed_params", t.params) for t in search.study.get_trials(deepcopy=False)
             if "metrics" in t.user_attrs or t.state in states]
    fresh = [point for point in grid(search.space) if point not in taken]
    wanted = len(fresh) if search.exhaustive else min(STARTUP, search.max_trials) - len(taken)
    if 0 < wanted < len(fresh):
        fresh = random.Random(seed).sample(fresh, wanted)
    for point in fresh[:max(0, wanted)]:
        search.study.enqueue_trial(point)


def _run(optuna, searches: list[_Search], n_parallel: int, work: _Work, nothing: dict) -> None:
    """Rounds until every study's budget is spent: ask up to `n_parallel` trials of each study, run every
    trial on every seed as one batch of jobs, tell the results."""
    total = sum(max(0, s.remaining(optuna)) for s in searches)
    with task("tune", total) as advance:
        while _round(optuna, searches, n_parallel, work, nothing, advance):
            pass


def _round(optuna, searches: list[_Search], n_parallel: int, work: _Work, nothing: dict, advance) -> bool:
    """One batch: ask, run, tell. False when no study has budget left."""
    asked, told = [], set()
    try:
        for search in searches:
            for _ in range(max(0, min(n_parallel, search.remaining(optuna)))):
                trial = search.study.ask(search.distributions(optuna))
                trial.set_user_attr("owner", _owner())  # so that a later run can tell it was left behind
                asked.append((search, trial))
        if not asked:
            return False
        advance(0, info=f"{len(asked)} trial(s)")
        seeds = work.seeds
        jobs = [_trial_job(work, s, trial.params, seed) for s, trial in asked for seed in seeds]
        runs = work.executor.map(jobs, f"tune: {len(asked)} trial(s) × {len(seeds)} seed(s)")
        for i, (search, trial) in enumerate(asked):
            _tell(optuna, search, trial, runs[i * len(seeds):(i + 1) * len(seeds)], nothing, seeds)
            told.add(trial.number)
            advance()
        return True
    finally:  # stopped mid-batch (Ctrl-C, an error): what was not told failed, and a later run asks it again
        for search, trial in asked:
            if trial.number not in told:
                search.study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _trial_job(work: _Work, search: _Search, hp: dict, seed: int) -> Job:
    """One trial's run on one tuning seed, as a job (stored like a bench cell under its content key)."""
    dataset, _, recipe = work.loaded[search.scenario.name]
    name, setup = search.method, work.setup(search.scenario.name, seed)
    identity = {"tune": True, "original": setup.original.record["key"], "oracle": setup.oracle.record["key"],
                "method": name, "hp": METHODS.get(name).resolve(hp, setup.split.spec), "mia": work.config.mia,
                "compute": work.runtime.identity()}
    return Job(trial_cell, {"out_dir": work.out_dir, "method": name, "hp": hp, "identity": identity, "setup": setup,
                            "data": dataset, "recipe": recipe, "store": work.store},
               f"{search.scenario.name} seed {seed}: {name} {_key(hp)}")


def trial_cell(out_dir: Path, method: str, hp: dict, identity: dict, setup: Setup, data: ImageDataset, recipe,
               store: Path) -> dict:
    """Job: `method` with `hp` on one tuning seed, against the oracle; its metrics."""
    def run() -> dict:
        try:
            result = unlearn(setup.original.load_model(), setup.split, method, data=data, recipe=recipe,
                             runtime=setup.runtime, seed=setup.seed, store=store, **hp)
        except DivergenceError as exc:  # a diverging trial loses; it does not end the search
            return {"error": str(exc), **dict.fromkeys(TRIAL_METRICS)}
        return evaluate(result.model, setup.oracle.load_model(), setup.split, data, setup.runtime, None,
                        result.record(), setup.oracle.record, setup.mia, attacks=setup.attacks, seed=setup.seed)

    return cached_cell(out_dir, setup.scenario, setup.seed, f"{method}-{_key(hp)}", identity, run).metrics


def nothing_cell(out_dir: Path, identity: dict, setup: Setup, data: ImageDataset) -> dict:
    """Job: the original model against the oracle: the scale of the relative objective."""
    def run() -> dict:
        return evaluate(setup.original.load_model(), setup.oracle.load_model(), setup.split, data, setup.runtime,
                        None, NOTHING_DONE, setup.oracle.record, setup.mia, attacks=setup.attacks, seed=setup.seed)

    return cached_cell(out_dir, setup.scenario, setup.seed, "original", identity, run).metrics


def _doing_nothing(work: _Work) -> dict[tuple[str, int], dict]:
    """Per scenario and tuning seed, the original model's metrics against the oracle."""
    jobs, names = [], []
    for s in work.config.scenarios:
        for seed in work.seeds:
            setup = work.setup(s.name, seed)
            identity = {"tune": True, "original": setup.original.record["key"], "oracle": setup.oracle.record["key"],
                        "mia": work.config.mia}
            jobs.append(Job(nothing_cell, {"out_dir": work.out_dir, "identity": identity, "setup": setup,
                                           "data": work.loaded[s.name][0]}, f"{s.name} seed {seed}: original"))
            names.append((s.name, seed))
    return dict(zip(names, work.executor.map(jobs, "tune: doing nothing")))


def _tell(optuna, search: _Search, trial, runs: list[dict], nothing: dict, seeds: list[int]) -> None:
    """Tell a trial its mean over the seeds (failed where it diverged on any), its metrics and constraints."""
    runs = [{**m, "relative": _relative(m, nothing[search.scenario.name, seed])} for m, seed in zip(runs, seeds)]
    means = {k: _mean([r.get(k) for r in runs]) for k in ("relative", *TRIAL_METRICS)}
    trial.set_user_attr("metrics", means)
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        trial.set_user_attr("error", errors[0])
    value = means[search.scenario.objective]
    if value is None or means["cost_ratio"] is None or means["forget_acc"] is None:
        search.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    constraints = {"cost": means["cost_ratio"] - search.cap}
    if search.scenario.max_forget_acc is not None:
        constraints["forget_acc"] = means["forget_acc"] - search.scenario.max_forget_acc
    if hasattr(trial, "set_constraint"):
        for name, excess in constraints.items():
            trial.set_constraint(name, excess)
    else:
        trial.set_user_attr("constraints", list(constraints.values()))
    search.study.tell(trial, value)


def _choose(searches: list[_Search], trials: list[dict]) -> dict:
    """Per scenario and method, the trial inside the budget and limit with the lowest objective (ties: the lower
    relative score), else the one nearest to them, flagged."""
    best: dict = {}
    for search in searches:
        s = search.scenario
        scored = [r for r in trials if r["scenario"] == s.name and r["method"] == search.method
                  and all(r[k] is not None for k in ("relative", s.objective, "cost_ratio", "forget_acc"))]
        if not scored:
            continue
        excess = partial(_excess, search.cap, s.max_forget_acc)
        chosen = min(scored, key=lambda r: (excess(r), r[s.objective], r["relative"]))
        best.setdefault(s.name, {})[search.method] = {**chosen, "unmet": _unmet(search.cap, s.max_forget_acc, chosen)}
    return best


def _excess(cap: float, limit: float | None, row: dict) -> float:
    """How far a trial is outside the budget and the forget-accuracy limit (0: inside both)."""
    over = max(0.0, row["cost_ratio"] - cap) / max(cap, 1e-9)
    return over + (max(0.0, row["forget_acc"] - limit) / 100 if limit is not None else 0.0)


def _unmet(cap: float, limit: float | None, row: dict) -> list[str]:
    return ([f"cost {row['cost_ratio']:.2f} > {cap}"] if row["cost_ratio"] > cap else []) + (
        [f"forget accuracy {row['forget_acc']:.1f}% > {limit}%"] if limit is not None and row["forget_acc"] > limit
        else [])


def _relative(metrics: dict, nothing: dict) -> float | None:
    """Avg.Gap and KL each as a share of the original model's: 2 = as far from the oracle as doing nothing."""
    if metrics["avg_gap"] is None or metrics["kl_forget"] is None:
        return None
    return metrics["avg_gap"] / max(nothing["avg_gap"], 1e-9) + metrics["kl_forget"] / max(nothing["kl_forget"], 1e-9)


def _mean(values: list) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)


def _key(hp: dict) -> str:
    return "_".join(f"{k}={v}" for k, v in sorted(hp.items()))


def _write(trials: list[dict], best: dict, out_dir: Path, seeds: list[int], max_cost: float, objectives: dict) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["scenario", "method", "trial", "hp", "relative", *TRIAL_METRICS],
                            extrasaction="ignore")
    writer.writeheader()
    for t in trials:
        writer.writerow({**t, "hp": json.dumps(t["hp"], sort_keys=True)})
    atomic_write_text(out_dir / "trials.csv", buffer.getvalue())
    lines = [f"Tuning seeds {', '.join(map(str, seeds))} (mean over them); cost ≤ {max_cost} of retraining's sample "
             "passes; objective per scenario: " + ", ".join(f"{s}: lowest {o}" for s, o in objectives.items()) + ". "
             f"Optuna studies (TPE, or the whole grid where it fits the trials): {JOURNAL}.",
             "", "| scenario | method | chosen | relative | Avg.Gap | D_KL | cost | trials |",
             "|---|---|---|---|---|---|---|---|"]
    for scenario, methods in best.items():
        for name, r in methods.items():
            count = sum(1 for t in trials if t["scenario"] == scenario and t["method"] == name)
            flag = f" ({'; '.join(r['unmet'])})" if r["unmet"] else ""
            lines.append(f"| {scenario} | {name} | `{json.dumps(r['hp'], sort_keys=True)}`{flag} | "
                         f"{r['relative']:.3f} | {r['avg_gap']:.2f} | {r['kl_forget']:.3f} | {r['cost_ratio']:.3f} | "
                         f"{count} |")
    kept_out = unmet_line(best)
    if kept_out:
        lines += ["", kept_out]
    atomic_write_text(out_dir / "tuning.md", "\n".join(lines) + "\n")


def unmet_line(best: dict) -> str | None:
    """One line naming the choices that miss their scenario's limits, which are never written to a file."""
    missed = [f"{scenario}/{name} ({'; '.join(r['unmet'])})" for scenario, methods in best.items()
              for name, r in methods.items() if r.get("unmet")]
    if not missed:
        return None
    return ("Not written to --write or --defaults-file, since no trial met the limits (any entry already there is "
            "kept): " + ", ".join(missed) + ".")


def best_by_spec(config: BenchConfig, best: dict) -> dict[str, dict[str, dict]]:
    """{dataset: {forget spec: {method: hp}}} from the per-scenario winners, for tuned.yaml; a winner that misses
    the scenario's cost or forget-accuracy limit (flagged "unmet") is left out, so the file keeps what it had."""
    found: dict[str, dict[str, dict]] = {}
    for scenario in config.scenarios:
        for name, r in best.get(scenario.name, {}).items():
            if r.get("unmet"):
                continue
            found.setdefault(scenario.data, {}).setdefault(scenario.forget, {})[name] = r["hp"]
    return found


def write_bench_file(path: Path, config: BenchConfig, best: dict, header: str) -> None:
    """Store the chosen hyperparameters in a bench YAML file, each scenario's under `hyperparameters`; a choice
    that misses its limits (flagged "unmet") is not written, and the scenario keeps what it had."""
    raw = config.model_dump(exclude_defaults=True)
    for scenario in raw["scenarios"]:
        chosen = {m: r["hp"] for m, r in best.get(scenario["name"], {}).items() if not r.get("unmet")}
        scenario["hyperparameters"] = {**scenario.get("hyperparameters", {}), **chosen}
    atomic_write_text(path, header + yaml.safe_dump(raw, sort_keys=False))
