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
from .tables import summarise, write_tables

__all__ = ["bench", "BenchConfig", "load_bench_config", "select_scenarios"]


def bench(config: BenchConfig, runtime: Runtime, out_dir: Path | None = None, store: Path | None = None) -> dict:
    """Run the bench and write results.md, results.csv, results.json and report.html into `out_dir`
    (default: <store>/bench/<key of the config>). Returns the paths and the summary rows."""
    store = writable_store(store)
    out_dir = Path(out_dir or store / "bench" / content_key(config.model_dump()))
    cells = run_bench(config, out_dir, runtime, store)
    summary = summarise(cells, config.mia)
    titles = {s.name: f"{s.name}: {s.data}, {s.model or 'default model'}, forget {s.forget}, "
                      f"seeds {', '.join(map(str, config.seeds))}" for s in config.scenarios}
    paths = write_tables(cells, summary, out_dir, titles)
    classes, forgotten = {}, {}
    for s in config.scenarios:
        if s.forget.startswith("class:"):
            data = load_dataset(s.data, s.root, **s.data_options)
            classes[s.name] = data.classes
            forgotten[s.name] = [data.classes.index(t) if t in data.classes else int(t)
                                 for t in s.forget[6:].split(",")]
    paths["report"] = write_report(summary, out_dir, titles, classes, forgotten,
                                   " ".join(["unlearnkit", *sys.argv[1:]]))
    return {"out_dir": out_dir, "paths": paths, "summary": summary}
