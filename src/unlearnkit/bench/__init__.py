"""The benchmark: scenarios × methods × seeds against the oracle, with tables and an HTML report."""
from __future__ import annotations

import sys
import types
from pathlib import Path

from ..artifacts import content_key, writable_store
from ..data import load_dataset, make_split
from ..errors import ConfigError
from ..executor import Executor
from ..runtime import Runtime
from .html import write_report
from .runner import run_bench
from .scenarios import BenchConfig, load_bench_config, select_scenarios
from .tables import summarise, verdicts, write_tables

__all__ = ["bench", "BenchConfig", "load_bench_config", "select_scenarios"]


def bench(config: BenchConfig, runtime: Runtime, out_dir: Path | None = None, store: Path | None = None,
          provided: dict[str, tuple] | None = None, executor: Executor | None = None) -> dict:
    """Run the bench and write results.md, results.csv, results.json and report.html into `out_dir`
    (default: <store>/bench/<key of the config>). `provided` maps scenario names to a user's own (dataset, model
    spec, recipe). `executor` runs the trainings and cells (default: in this process; the numbers are the same on
    any). Returns the paths, the summary rows and each scenario's verdict in words."""
    store = writable_store(store)
    fingerprints = {name: loaded[0].fingerprint for name, loaded in (provided or {}).items()}
    out_dir = Path(out_dir or store / "bench" / content_key([config.model_dump(), fingerprints]))
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"the bench's output '{out_dir}' is a file, not a folder")
    cells = run_bench(config, out_dir, runtime, store, provided, executor)
    summary = summarise(cells, config.mia)
    if config.audit:
        audit_columns(config, summary, runtime, store, provided, executor)
    said = verdicts(summary)
    titles = {s.name: f"{s.name}: {s.data}, {s.model or 'default model'}, forget {s.forget}, "
                      f"seeds {', '.join(map(str, config.seeds))}" for s in config.scenarios}
    paths = write_tables(cells, summary, out_dir, titles, said)
    classes, forgotten = {}, {}
    for s in config.scenarios:
        if s.forget.startswith("class:"):
            data = provided[s.name][0] if s.name in (provided or {}) else load_dataset(s.data, s.root,
                                                                                       **s.data_options)
            classes[s.name] = data.classes
            # The split's own reading of the spec: "class:3," or "class: cat" are valid specs.
            forgotten[s.name] = list(make_split(s.forget, data, config.seeds[0]).forgotten_classes)
    paths["report"] = write_report(summary, out_dir, titles, classes, forgotten,
                                   " ".join(["unlearnkit", *sys.argv[1:]]), said)
    return {"out_dir": out_dir, "paths": paths, "summary": summary, "verdicts": said}


AUDIT_COLUMNS = {"auc": "audit_auc", "tpr_at_1pct_fpr": "audit_tpr_1pct", "epsilon": "audit_epsilon",
                 "klom": "audit_klom"}


def bench_on(data, model, forget=("random:0.1",), methods: list[str] | None = None, seeds=(0, 1, 2),
             recipe=None, out: Path | None = None, store: Path | None = None, runtime: Runtime | None = None,
             mia: str = "mia_entropy") -> dict:
    """`uk.bench`: the bench on a user's dataset object (api.bench says more)."""
    from .scenarios import on_objects

    config, provided = on_objects(data, model, forget, methods, seeds, recipe, mia)
    return bench(config, Runtime.given(runtime, "bench()"), out, store, provided)


def audit_columns(config: BenchConfig, summary: dict, runtime: Runtime, store: Path, provided, executor) -> None:
    """Per scenario, the audit of the bench's methods on a pool of `config.audit` models (seed: the bench's
    first), its figures added to the summary rows: each method's to its row, the oracle-vs-oracle reference to
    RT′'s, doing nothing's to the Original's."""
    from ..audit.audit import run_audit
    from .runner import NOISE_FLOOR, ORIGINAL, default_methods, load_scenario

    methods = [m for m in (config.methods or default_methods()) if m not in ("sisa",)]
    for scenario in config.scenarios:
        dataset, spec, recipe = (provided or {}).get(scenario.name) or load_scenario(scenario)
        found = run_audit(dataset, spec, recipe, scenario.forget, methods, config.audit, config.seeds[0], executor,
                          store, runtime, scenario.hyperparameters)
        by_row = {({"oracle": NOISE_FLOOR, "original": ORIGINAL}).get(r["method"], r["method"]): r
                  for r in found["rows"]}
        for row in summary[scenario.name]:
            audited = by_row.get(row["method"], {})
            row.update({column: audited.get(key) for key, column in AUDIT_COLUMNS.items()})


class _CallablePackage(types.ModuleType):
    """`uk.bench(...)` is the API call (api.bench) even once this package, its namesake, has been imported and
    so shadows the lazy attribute on `unlearnkit`."""

    def __call__(self, *args, **kwargs):
        return bench_on(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
