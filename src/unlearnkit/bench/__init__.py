"""The benchmark: scenarios × methods × seeds against the oracle, with tables and an HTML report."""
from __future__ import annotations

import sys
from pathlib import Path

from ..artifacts import content_key, writable_store
from ..data import load_dataset
from ..runtime import Runtime
from .html import write_report
from .runner import run_bench
from .scenarios import BenchConfig, load_bench_config, select_scenarios
from .tables import summarise, verdicts, write_tables

__all__ = ["bench", "BenchConfig", "load_bench_config", "select_scenarios"]


def bench(config: BenchConfig, runtime: Runtime, out_dir: Path | None = None, store: Path | None = None,
          provided: dict[str, tuple] | None = None) -> dict:
    """Run the bench and write results.md, results.csv, results.json and report.html into `out_dir`
    (default: <store>/bench/<key of the config>). `provided` maps scenario names to a user's own (dataset, model
    spec, recipe). Returns the paths, the summary rows and each scenario's verdict in words."""
    store = writable_store(store)
    fingerprints = {name: loaded[0].fingerprint for name, loaded in (provided or {}).items()}
    out_dir = Path(out_dir or store / "bench" / content_key([config.model_dump(), fingerprints]))
    cells = run_bench(config, out_dir, runtime, store, provided)
    summary = summarise(cells, config.mia)
    said = verdicts(summary)
    titles = {s.name: f"{s.name}: {s.data}, {s.model or 'default model'}, forget {s.forget}, "
                      f"seeds {', '.join(map(str, config.seeds))}" for s in config.scenarios}
    paths = write_tables(cells, summary, out_dir, titles, said)
    classes, forgotten = {}, {}
    for s in config.scenarios:
        if s.forget.startswith("class:"):
            data = provided[s.name][0] if s.name in (provided or {}) else load_dataset(s.data, s.root, **s.data_options)
            classes[s.name] = data.classes
            forgotten[s.name] = [data.classes.index(t) if t in data.classes else int(t)
                                 for t in s.forget[6:].split(",")]
    paths["report"] = write_report(summary, out_dir, titles, classes, forgotten,
                                   " ".join(["unlearnkit", *sys.argv[1:]]), said)
    return {"out_dir": out_dir, "paths": paths, "summary": summary, "verdicts": said}
