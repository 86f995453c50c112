"""The command line: a thin layer over the Python API. Every command takes --json and then prints one
JSON object as the last line of standard output; errors are one line on standard error and exit 2."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import click
import typer
from typer.core import TyperGroup

from .errors import ConfigError, UnlearnkitError

# Typer 0.29 vendors click: its usage errors derive from typer.exceptions.TyperException, older ones from click's.
USAGE_ERRORS = (click.ClickException, getattr(typer.exceptions, "TyperException", click.ClickException))


class OneLineErrors(TyperGroup):
    """Usage errors (an unknown flag, a value of the wrong type) as one line on standard error and exit code 2,
    like every other error a user can cause, instead of click's usage panel."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except USAGE_ERRORS as exc:
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            if not message:  # no command given: click has shown the help, which is the answer
                return sys.exit(getattr(exc, "exit_code", 2)) if standalone_mode else getattr(exc, "exit_code", 2)
            click.echo(f"error: {message}", err=True)
            if "--json" in args:
                click.echo(json.dumps({"error": message}))
            code = 2
        except (click.exceptions.Abort, typer.Abort):
            click.echo("error: aborted", err=True)
            code = 130
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Machine unlearning: train, forget, evaluate against the retrained oracle, benchmark.")

# Shared options, declared once.
DataOpt = typer.Option("digits", "--data", help="Dataset name (see `unlearnkit datasets`).")
RootOpt = typer.Option(None, "--root", help="Local folder of the dataset (not needed for digits).")
ModelOpt = typer.Option(None, "--model", help="Model name (see `unlearnkit models`); default: the dataset's.")
ConfigOpt = typer.Option(None, "--config", help="YAML file of settings; command-line flags override it. Keys: "
                         "data, root, data_options, model, model_options, seed, recipe (a mapping of recipe fields), "
                         "forget (retrain), image_size and layout (--task generation); for forget: seed, "
                         "hyperparameters (a mapping). Any other key is refused.")
SeedOpt = typer.Option(None, "--seed", help="Random seed (default 0).")
SetOpt = typer.Option(None, "--set", help="Override a setting: key=value (repeatable).")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (bf16 autocast on GPU).")
ThreadsOpt = typer.Option(None, "--threads", help="CPU threads for torch (default 1, or $UNLEARNKIT_THREADS); "
                                                  "part of every content key, since it changes float rounding.")
StoreOpt = typer.Option(None, "--store", help="Folder of stored runs (default ./unlearnkit-runs or $UNLEARNKIT_STORE).")
JsonOpt = typer.Option(False, "--json", metavar="", help="Print one JSON object as the last line of standard output.")
EpochsOpt = typer.Option(None, "--epochs", help="Override the recipe's epochs.")
LrOpt = typer.Option(None, "--lr", help="Override the recipe's learning rate.")
BatchOpt = typer.Option(None, "--batch-size", help="Override the recipe's batch size.")
ForceOpt = typer.Option(False, "--force", metavar="",
                        help="Train again even if a stored run with the same content exists (and discard any "
                             "partial state).")
TaskOpt = typer.Option("classification", "--task",
                       help="The domain: classification, generation or text-to-image (`unlearnkit tasks`).")
CheckpointTaskOpt = typer.Option(None, "--task", help="The domain (default: the checkpoint's own).")
OnlyOpt = typer.Option(None, "--only", help="Comma-separated scenario names to run (default: all in the file).")
ExecutorOpt = typer.Option("local", "--executor", help="local (this process) or ray (a Ray cluster: local by "
                                                       "default, --address for an existing one).")
AddressOpt = typer.Option(None, "--address", help="With --executor ray: an existing cluster ('auto' or ray://host:port).")
CpusOpt = typer.Option(1.0, "--cpus-per-job", help="With --executor ray: CPUs reserved by each job.")
GpusOpt = typer.Option(0.0, "--gpus-per-job", help="With --executor ray: GPUs (or a fraction) reserved by each job.")
NumCpusOpt = typer.Option(None, "--num-cpus", help="With --executor ray and no --address: the local cluster's CPUs.")
ForgetClassOpt = typer.Option(None, "--forget-class", help="With --task generation: the class to forget (default 0).")
DenoiserOpt = typer.Option(None, "--denoiser", help="With --task generation: unet (default) or dit.")
TunedOpt = typer.Option(False, "--tuned", metavar="",
                        help="Apply the values `unlearnkit tune` chose for this dataset and forget spec (tuned.yaml), "
                             "where it has an entry, under any --set. Off: every method runs at its defaults.")


INTERRUPTED = "interrupted (Ctrl-C / SIGINT); what was finished is stored, nothing half-written is kept"


def command(fn: Callable) -> Callable:
    """Register `fn` as a command that turns UnlearnkitError into a one-line error and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UnlearnkitError as exc:
            typer.echo(f"error: {exc}", err=True)
            if kwargs.get("as_json"):
                typer.echo(json.dumps({"error": str(exc)}))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:  # Ctrl-C (SIGINT): one line, and with --json still one last JSON object
            typer.echo(f"error: {INTERRUPTED}", err=True)
            if kwargs.get("as_json"):
                typer.echo(json.dumps({"error": INTERRUPTED}))
            raise typer.Exit(130) from None

    return app.command(fn.__name__.rstrip("_").replace("_", "-"))(wrapper)


def get_domain(name: str):
    """The domain `--task` names, or one line listing the registered ones."""
    from .domains import domain

    return domain(name)


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """'0,1,2' -> [0, 1, 2], or one ConfigError line."""
    tokens = [t.strip() for t in text.split(",")]
    try:
        seeds = [int(t) for t in tokens if t]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated whole numbers such as 0,1,2, got {text!r}") from None
    from .runtime import check_seeds  # also refuses an empty list

    return check_seeds(seeds, option)


def check_seed(seed: Optional[int], option: str = "--seed") -> None:
    """Every command refuses a negative seed with the same line (None: the option was not given)."""
    from . import runtime

    if seed is not None:
        runtime.check_seed(seed, option)


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{option} names nothing; expected comma-separated names")
    return names


def emit(result: dict[str, Any], as_json: bool, human: str) -> None:
    typer.echo(human, err=as_json)
    if as_json:
        typer.echo(json.dumps(result, default=str))


# The top-level keys of a `--config` file, and what each holds (config.CONFIG_KINDS); nothing else is read.
TRAIN_KEYS = {"data": "text", "root": "text", "data_options": "mapping", "model": "text",
              "model_options": "mapping", "seed": "seed", "recipe": "mapping"}
RETRAIN_KEYS = {**TRAIN_KEYS, "forget": "text"}
GENERATION_KEYS = {"image_size": "count", "layout": "text"}  # --task generation's dataset settings
FORGET_KEYS = {"seed": "seed", "hyperparameters": "mapping"}


# Config keys that are command-line options instead (the commands' own flags, not file settings).
OPTION_KEYS = frozenset({"method", "model", "forget", "store", "device", "threads", "task", "out", "force", "set"})


def _option_hint(key: str) -> Optional[str]:
    """Where an unknown config key is a command-line option: say so."""
    return f"'{key}' is the command-line option --{key}" if key in OPTION_KEYS else None


def _recipe_hint(key: str) -> Optional[str]:
    from .config import TrainRecipe

    if key in TrainRecipe.model_fields:
        return f"'{key}' is a recipe field: put it under recipe:"
    if key == "forget":
        return "'forget' is read by retrain only"
    return _option_hint(key)


def _settings(config: Optional[Path], flags: dict[str, Any], keys: dict[str, str], hint=None) -> dict[str, Any]:
    """YAML file settings (only `keys`, each of its kind), overridden by the flags the user actually gave (those
    not None)."""
    from .config import check_config, read_yaml

    settings = check_config(read_yaml(config), config, keys, hint) if config else {}
    settings.update({k: v for k, v in flags.items() if v is not None})
    return settings


def _train_command(kind: str, data, root, model, config, seed, forget, epochs, lr, batch_size, assignments,
                   device, threads, store, force, task_name, as_json) -> None:
    from .artifacts import writable_store
    from .config import parse_assignments
    from .runtime import Runtime

    check_seed(seed)
    domain = get_domain(task_name)
    keys = {**(RETRAIN_KEYS if kind == "oracle" else TRAIN_KEYS),
            **(GENERATION_KEYS if domain.name == "generation" else {})}
    settings = _settings(config, {"data": data if data != "digits" else None, "root": root, "model": model,
                                  "seed": seed, "forget": forget}, keys, _recipe_hint)
    settings.setdefault("data", data)
    recipe = {**settings.get("recipe", {}), **parse_assignments(assignments)}
    recipe.update({k: v for k, v in {"epochs": epochs, "lr": lr, "batch_size": batch_size}.items() if v is not None})
    runtime = Runtime.create(device, threads)
    result = domain.train(kind, settings, recipe, runtime, writable_store(store), force)
    emit(result, as_json, domain.describe_training(result))


@command
def train(data: str = DataOpt, root: Optional[str] = RootOpt, model: Optional[str] = ModelOpt,
          config: Optional[Path] = ConfigOpt, seed: Optional[int] = SeedOpt,
          epochs: Optional[int] = EpochsOpt, lr: Optional[float] = LrOpt, batch_size: Optional[int] = BatchOpt,
          assignments: Optional[list[str]] = SetOpt, device: str = DeviceOpt, threads: Optional[int] = ThreadsOpt,
          store: Optional[Path] = StoreOpt, force: bool = ForceOpt, task_name: str = TaskOpt,
          as_json: bool = JsonOpt):
    """Train the original model on the whole training set (or reuse the stored one)."""
    _train_command("original", data, root, model, config, seed, None, epochs, lr, batch_size, assignments,
                   device, threads, store, force, task_name, as_json)


@command
def retrain(forget: Optional[str] = typer.Option(None, "--forget", help="random:0.1, class:3[,5] or indices:FILE."),
            data: str = DataOpt, root: Optional[str] = RootOpt, model: Optional[str] = ModelOpt,
            config: Optional[Path] = ConfigOpt, seed: Optional[int] = SeedOpt,
            epochs: Optional[int] = EpochsOpt, lr: Optional[float] = LrOpt, batch_size: Optional[int] = BatchOpt,
            assignments: Optional[list[str]] = SetOpt, device: str = DeviceOpt, threads: Optional[int] = ThreadsOpt,
            store: Optional[Path] = StoreOpt, force: bool = ForceOpt, task_name: str = TaskOpt,
            as_json: bool = JsonOpt):
    """Train the oracle: the same recipe on the remain set only (the gold standard of unlearning)."""
    _train_command("oracle", data, root, model, config, seed, forget, epochs, lr, batch_size, assignments,
                   device, threads, store, force, task_name, as_json)


@command
def forget(model: Path = typer.Option(..., "--model", help="Checkpoint folder of the original model."),
           method: str = typer.Option("sfron", "--method", help="Unlearning method (see `unlearnkit methods`)."),
           forget_spec: str = typer.Option(..., "--forget", help="random:0.1, class:3[,5] or indices:FILE."),
           assignments: Optional[list[str]] = SetOpt, config: Optional[Path] = ConfigOpt,
           seed: Optional[int] = typer.Option(None, "--seed",
                                              help="Seed of the split and the method (default: the original's)."),
           device: str = DeviceOpt, threads: Optional[int] = ThreadsOpt, tuned: bool = TunedOpt,
           task_name: Optional[str] = CheckpointTaskOpt, store: Optional[Path] = StoreOpt, force: bool = ForceOpt,
           as_json: bool = JsonOpt):
    """Unlearn a forget set from a trained model; writes the unlearned checkpoint and its record and prints its
    figures (for classifiers, the oracle-free verdict: forgotten / not yet / model damaged)."""
    from .artifacts import load_checkpoint, writable_store
    from .config import parse_assignments
    from .domains import domain_of
    from .runtime import Runtime

    check_seed(seed)
    store = writable_store(store)
    checkpoint = load_checkpoint(model)
    domain = domain_of(checkpoint, task_name)
    declared = domain.methods.get(method)  # an unknown method fails before anything is read

    def hint(key: str) -> Optional[str]:
        if key in {row["name"] for row in declared.describe()}:
            return f"'{key}' is a hyperparameter of {method}: put it under hyperparameters:"
        return _option_hint(key)

    settings = _settings(config, {"seed": seed}, FORGET_KEYS, hint)
    overlay = {}
    if tuned:
        if domain.name != "classification":
            raise ConfigError(f"--tuned: tuned.yaml holds classification values only, not {domain.name}")
        from .domains.classification import tuned_values

        overlay = tuned_values(method, (checkpoint.record.get("data") or {}).get("name"), forget_spec)
    hyperparameters = {**overlay, **settings.get("hyperparameters", {}), **parse_assignments(assignments)}
    seed = settings.get("seed")
    out = domain.forget(checkpoint, method, forget_spec, None if seed is None else int(seed), hyperparameters,
                        Runtime.create(device, threads), store, force)
    emit(out, as_json, domain.describe_forget(out))


@command
def evaluate(checkpoint: Path = typer.Argument(..., help="Checkpoint folder of the model to evaluate."),
             oracle: Path = typer.Option(..., "--oracle",
                                         help="Checkpoint folder of the oracle (retrained on the same split)."),
             original: Optional[Path] = typer.Option(None, "--original",
                                                     help="Original model, for the relative verification error."),
             mia: str = typer.Option("mia_entropy", "--mia",
                                     help="Attack used in Avg.Gap: mia_entropy (SFR-on), mia_svc (SalUn), "
                                          "mia_entropy_scaled or mia_loss (docs/evaluation.md)."),
             root: Optional[str] = typer.Option(None, "--root", help="Dataset folder, if it moved since training."),
             seed: Optional[int] = typer.Option(None, "--seed",
                                                help="Seed of the SVC attack's shadow subset (default 0)."),
             task_name: Optional[str] = CheckpointTaskOpt, store: Optional[Path] = StoreOpt,
             device: str = DeviceOpt, threads: Optional[int] = ThreadsOpt, as_json: bool = JsonOpt):
    """Evaluate a model against its oracle: FA, RA, TA, MIA, Avg.Gap, KL, verification error, RTE (a generator:
    forget and remain accuracy of its samples, FID*, Avg.Gap, KL)."""
    from .artifacts import finite_json, load_checkpoint
    from .domains import domain_of
    from .runtime import Runtime

    check_seed(seed)
    domain = domain_of(load_checkpoint(checkpoint), task_name)
    options = {"mia": mia, "root": root, "seed": seed, "store": store}
    result = domain.evaluate(checkpoint, oracle, original, options, Runtime.create(device, threads))
    emit(finite_json(result), as_json, domain.describe_evaluation(result))


@command
def methods(as_json: bool = JsonOpt,
            name: Optional[str] = typer.Argument(None, help="Show one method's hyperparameters."),
            forget_spec: Optional[str] = typer.Option(None, "--forget",
                                                      help="With NAME: the defaults for this kind of forget spec "
                                                           "(class-wise defaults differ for some methods)."),
            task_name: str = TaskOpt):
    """List every unlearning method of a domain with its decomposition (mask | forgetting | remaining | geometry)."""
    from rich.console import Console
    from rich.table import Table

    METHODS = get_domain(task_name).methods

    if name:
        method = METHODS.get(name)
        resolved = method.parameters(forget_spec)
        settings = [{**row, "default": resolved[row["name"]]} for row in method.describe()]
        info = {"name": name, "title": method.title, **method.columns(), "notes": method.notes,
                "hyperparameters": resolved, "settings": settings, "for": {"forget": forget_spec},
                "class_defaults": method.class_defaults, "search": method.search}
        where = f" for {forget_spec}" if forget_spec else ""
        console = Console(stderr=as_json, width=160)
        console.print(f"{name}: {method.title}", markup=False)
        for key, value in method.columns().items():
            console.print(f"  {key}: {value}", markup=False)
        if method.notes:
            console.print(f"  notes: {method.notes}", markup=False)
        # Without --forget, the class-wise defaults that differ stand beside the random-forgetting ones.
        classwise = method.parameters("class:0") if forget_spec is None and method.class_defaults else None
        table = Table("hyperparameter", "type", "range", f"default{where or ' (random)' if classwise else where}",
                      *(["class-wise"] if classwise else []), "description", title=f"{name}: hyperparameters")
        for row in settings:
            differs = ([repr(classwise[row["name"]]) if classwise[row["name"]] != row["default"] else ""]
                       if classwise else [])
            table.add_row(row["name"], row["type"], row["range"], repr(row["default"]), *differs, row["description"])
        console.print(table)
        if as_json:
            typer.echo(json.dumps(info, default=str))
        return
    rows = [{"name": n, "title": m.title, **m.columns()} for n, m in METHODS.items()]

    table = Table("method", "mask", "forgetting part", "remaining part", "geometry",
                  title=f"Unlearning methods ({task_name})")
    for r in rows:
        table.add_row(r["name"], r["mask"], r["forgetting"], r["remaining"], r["geometry"])
    Console(stderr=as_json, width=160).print(table)
    if as_json:
        typer.echo(json.dumps({"task": task_name, "methods": rows}))


@command
def bench(scenarios: Optional[Path] = typer.Option(None, "--scenarios",
                                                   help="Bench YAML file (default: the embedded digits bench)."),
          quick: bool = typer.Option(False, "--quick", metavar="", help="One seed only (the first)."),
          methods_: Optional[str] = typer.Option(None, "--methods", help="Comma-separated methods (default: all)."),
          seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 0,1,2."),
          out: Optional[Path] = typer.Option(None, "--out",
                                             help="Output folder (default: <store>/bench/<config key>)."),
          forget_class: Optional[int] = ForgetClassOpt, denoiser: Optional[str] = DenoiserOpt,
          concept: Optional[str] = typer.Option(None, "--concept", help="With --task text-to-image: the concept "
                                                "to erase, a digit word or a style (default seven)."),
          only: Optional[str] = OnlyOpt, tuned: bool = TunedOpt,
          task_name: str = TaskOpt, device: str = DeviceOpt, threads: Optional[int] = ThreadsOpt,
          executor: str = ExecutorOpt, address: Optional[str] = AddressOpt, cpus_per_job: float = CpusOpt,
          gpus_per_job: float = GpusOpt, num_cpus: Optional[int] = NumCpusOpt,
          store: Optional[Path] = StoreOpt, as_json: bool = JsonOpt):
    """Benchmark methods against the oracle over scenarios and seeds; writes tables and an HTML report.
    Killed and started again, it skips the cells it has finished."""
    from .artifacts import finite_json, writable_store
    from .runtime import Runtime

    domain = get_domain(task_name)
    options = {"scenarios": scenarios, "quick": quick, "out": out, "only": only, "tuned": tuned,
               "methods": _names(methods_, "--methods") if methods_ is not None else None,
               "seeds": parse_seeds(seeds) if seeds is not None else None, "forget_class": forget_class,
               "denoiser": denoiser, "concept": concept,
               "executor": {"name": executor, "address": address, "cpus_per_job": cpus_per_job,
                            "gpus_per_job": gpus_per_job, "num_cpus": num_cpus}}
    result = domain.bench(options, Runtime.create(device, threads), writable_store(store))
    text = result.pop("text")
    emit(finite_json(result), as_json, text)


@command
def tune(scenarios: Optional[Path] = typer.Option(None, "--scenarios",
                                                  help="Bench YAML file (default: the embedded digits bench)."),
         methods_: Optional[str] = typer.Option(None, "--methods",
                                                help="Comma-separated methods (default: all with a search space)."),
         seeds: str = typer.Option("100", "--seeds", help="Comma-separated tuning seeds (the objective is their mean); "
                                                          "none may be a reported seed."),
         max_trials: int = typer.Option(60, "--max-trials",
                                        help="Optuna trials per method and scenario (a grid no larger is tried "
                                             "whole)."),
         max_cost: float = typer.Option(0.5, "--max-cost",
                                        help="Largest compute allowed, as a share of retraining's sample passes."),
         only: Optional[str] = OnlyOpt,
         write: Optional[Path] = typer.Option(None, "--write",
                                              help="Write the chosen hyperparameters into this bench YAML file."),
         defaults_file: Optional[Path] = typer.Option(
             None, "--defaults-file", help="Merge the chosen hyperparameters into this tuned-defaults YAML "
                                           "(the package's is src/unlearnkit/unlearning/tuned.yaml)."),
         out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <store>/tune)."),
         parallel: Optional[int] = typer.Option(None, "--parallel",
                                                help="Trials asked of each study at once (default: enough to fill "
                                                     "the executor)."),
         device: str = DeviceOpt, threads: Optional[int] = ThreadsOpt, executor: str = ExecutorOpt,
         address: Optional[str] = AddressOpt, cpus_per_job: float = CpusOpt, gpus_per_job: float = GpusOpt,
         num_cpus: Optional[int] = NumCpusOpt, forget_class: Optional[int] = ForgetClassOpt,
         denoiser: Optional[str] = DenoiserOpt, task_name: str = TaskOpt, store: Optional[Path] = StoreOpt,
         as_json: bool = JsonOpt):
    """Choose each method's hyperparameters per scenario against the oracle (Optuna TPE over the declared grids,
    on held-out seeds, a journal storage that parallel workers share)."""
    from .artifacts import writable_store
    from .runtime import Runtime

    domain = get_domain(task_name)
    if max_trials < 1:
        raise ConfigError(f"--max-trials must be at least 1, got {max_trials}")
    if not max_cost > 0:
        raise ConfigError(f"--max-cost must be > 0 (a share of retraining's sample passes), got {max_cost}")
    if parallel is not None and parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {parallel}")
    options = {"scenarios": scenarios, "only": only, "write": write, "defaults_file": defaults_file, "out": out,
               "methods": _names(methods_, "--methods") if methods_ is not None else None,
               "seeds": parse_seeds(seeds), "max_trials": max_trials, "max_cost": max_cost, "parallel": parallel,
               "forget_class": forget_class, "denoiser": denoiser,
               "executor": {"name": executor, "address": address, "cpus_per_job": cpus_per_job,
                            "gpus_per_job": gpus_per_job, "num_cpus": num_cpus}}
    result = domain.tune(options, Runtime.create(device, threads), writable_store(store))
    text = result.pop("text")
    emit(result, as_json, text)


@command
def audit(data: str = DataOpt, root: Optional[str] = RootOpt, model: Optional[str] = ModelOpt,
          forget_spec: str = typer.Option("random:0.1", "--forget", help="random:0.1 or class:3: the candidate "
                                                                        "forget set; each member forgets its share"),
          methods_: str = typer.Option("sfron,ft", "--methods", help="Comma-separated methods to audit."),
          models_: int = typer.Option(16, "--models", help="Pool size K: members, each on a random half (a "
                                                            "multiple of 4, at least 8)."),
          seed: int = typer.Option(0, "--seed", help="Seed of the pool (halves, forget set, members)."),
          epochs: Optional[int] = EpochsOpt, executor: str = ExecutorOpt, address: Optional[str] = AddressOpt,
          cpus_per_job: float = CpusOpt, gpus_per_job: float = GpusOpt, num_cpus: Optional[int] = NumCpusOpt,
          device: str = DeviceOpt, threads: Optional[int] = ThreadsOpt, store: Optional[Path] = StoreOpt,
          as_json: bool = JsonOpt):
    """Per-example audits of forgetting on model pools: U-LiRA (AUC, TPR at 1% and 0.1% FPR), the NeurIPS'23
    challenge's per-example ε and KLOM, for each method and two references: oracle vs oracle (chance) and doing
    nothing. Writes an HTML report with ROC curves, ε histograms and the forget examples most exposed."""
    from .audit.audit import audit_command

    check_seed(seed)
    result = audit_command(data, root, model, forget_spec, methods_, models_, seed, executor, address, cpus_per_job,
                           gpus_per_job, store, device, threads,
                           recipe={"epochs": epochs} if epochs is not None else None, num_cpus=num_cpus)
    rows = result["rows"]
    lines = [f"{'row':<14}{'AUC':>7}{'TPR@1%':>9}{'TPR@0.1%':>10}{'mean ε':>9}{'KLOM p95':>10}"]
    lines += [f"{r['method']:<14}{r['auc']:>7.3f}{r['tpr_at_1pct_fpr']:>9.3f}{r['tpr_at_0p1pct_fpr']:>10.3f}"
              f"{r['epsilon']:>9.2f}{r['klom']:>10.2f}" if r.get("auc") is not None else f"{r['method']:<14} "
              f"{r.get('error', 'n/a')}" for r in rows]
    emit(result, as_json, "\n".join([*lines, *([result["note"]] if result.get("note") else []),
                                     f"report: {result['report']}"]))


@command
def erase(model_dir: Path = typer.Option(..., "--model-dir", help="A local diffusers folder, e.g. a saved Stable "
                                                                  "Diffusion (read with local_files_only)."),
          concept: str = typer.Option(..., "--concept", help="The concept's words, e.g. nudity."),
          out: Path = typer.Option(..., "--out", help="Folder for the erased model (a diffusers folder)."),
          method: str = typer.Option("esd-u", "--method", help="esd-x, esd-u, salun, sfron, uce or fmn."),
          prompts: Optional[list[str]] = typer.Option(None, "--prompt", help="A prompt of the concept (repeatable; "
                                                                            "default: the concept itself)."),
          prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="An I2P-style CSV whose 'prompt' "
                                                                                 "column holds the concept's prompts."),
          keep: Optional[list[str]] = typer.Option(None, "--keep", help="A prompt to keep (repeatable; SalUn and "
                                                                        "SFR-on need at least one)."),
          anchor: str = typer.Option("", "--anchor", help="Where SalUn and SFR-on remap the concept's prompts "
                                                          "(default: the empty prompt)."),
          per_prompt: int = typer.Option(4, "--per-prompt", help="Generated images per prompt (the forget and "
                                                                 "remain sets)."),
          steps: int = typer.Option(25, "--steps", help="DDIM steps of those generations."),
          guidance: float = typer.Option(7.5, "--guidance", help="Their classifier-free guidance (SD convention)."),
          seed: int = typer.Option(0, "--seed", help="Seed of the generations and of the method."),
          assignments: Optional[list[str]] = SetOpt, device: str = DeviceOpt, threads: Optional[int] = ThreadsOpt,
          force: bool = typer.Option(False, "--force", metavar="", help="Replace --out if it exists."),
          as_json: bool = JsonOpt):
    """Erase a free-text concept from a local text-to-image model (Stable Diffusion components): the forget and
    remain sets are the model's own generations of the concept's prompts and of the prompts to keep."""
    from .config import parse_assignments
    from .runtime import Runtime
    from .text_to_image.erase import erase_folder
    from .text_to_image.nudity import read_prompt_file

    check_seed(seed)
    if prompt_file is not None:
        prompts = [*(prompts or []), *(row.prompt for row in read_prompt_file(prompt_file))]
    result = erase_folder(model_dir, out, concept, method, force=force, runtime=Runtime.create(device, threads),
                          prompts=prompts, keep=keep or [], anchor=anchor, per_prompt=per_prompt, steps=steps,
                          guidance=guidance, seed=seed, **parse_assignments(assignments))
    emit(result, as_json, f"{method}: erased '{concept}' in {result['wall_time_s']:.1f} s -> {result['model_dir']}")


# How each command reaches a domain: through the domain operation it calls (run where the domain implements it),
# or a fixed domain for the commands without --task; None: every domain. Listings of the package (tasks,
# datasets, models) are in LISTINGS. A command in neither fails tests/test_cli.py, so `tasks` stays complete.
COMMAND_DOMAINS: dict[str, Optional[str]] = {
    "methods": None, "train": "op:train", "retrain": "op:train", "forget": "op:forget", "evaluate": "op:evaluate",
    "bench": "op:bench", "tune": "op:tune", "audit": "classification", "erase": "text-to-image"}
LISTINGS = ("tasks", "datasets", "models")


def command_names() -> list[str]:
    """The commands registered on the app, in their order."""
    return [c.name or c.callback.__name__ for c in app.registered_commands]


def commands_of(task: str) -> list[str]:
    """The commands that run on domain `task`, from the registered command set."""
    from .domains import supporting

    def runs(name: str) -> bool:
        how = COMMAND_DOMAINS[name]
        return how is None or (task in supporting(how[3:]) if how.startswith("op:") else how == task)

    return [name for name in command_names() if name not in LISTINGS and runs(name)]


@command
def tasks(as_json: bool = JsonOpt):
    """List the domains (`--task`): what each unlearns and which commands run on it."""
    from .domains import DOMAINS, names

    rows = [{"task": n, "title": DOMAINS.get(n).title, "methods": DOMAINS.get(n).methods.names(),
             "commands": commands_of(n)} for n in names()]
    lines = [f"{r['task']:<16}{r['title']}\n{'':<16}commands: {', '.join(r['commands'])}; methods: "
             f"{', '.join(r['methods'])}" for r in rows]
    emit({"tasks": rows}, as_json, "\n".join(lines))


@command
def datasets(as_json: bool = JsonOpt):
    """List the registered datasets with their default model and recipe."""
    from .data import DATASETS

    rows = {name: {"description": s.description, "default_model": s.default_model, "needs_root": s.needs_root,
                   "options": s.options(), "recipe": s.recipe.model_dump()} for name, s in DATASETS.items()}
    emit(rows, as_json, "\n".join(f"{n:12} {r['description']} (model {r['default_model']})" for n, r in rows.items()))


@command
def models(as_json: bool = JsonOpt):
    """List the registered models."""
    from .models import MODELS

    rows = {name: (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
            for name, builder in MODELS.items()}
    emit(rows, as_json, "\n".join(f"{n:10} {d}" for n, d in rows.items()))


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
