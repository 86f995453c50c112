"""Progress bars with ETA on standard error (standard output stays clean for --json).

One live display is shared by all nested tasks (a bench cell and the training inside it).
Bars are drawn only on a terminal, or when UNLEARNKIT_PROGRESS=1.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_progress: Progress | None = None
_open_tasks = 0


def forced() -> bool:
    """UNLEARNKIT_PROGRESS=1: draw the bars even where standard error is not a terminal (a log file, a pipe)."""
    return os.environ.get("UNLEARNKIT_PROGRESS") == "1"


def enabled() -> bool:
    flag = os.environ.get("UNLEARNKIT_PROGRESS")
    return forced() if flag is not None else sys.stderr.isatty()


@contextmanager
def task(description: str, total: int) -> Iterator[Callable[..., None]]:
    """Show a bar for `total` units; yields `advance(n=1, **fields)`."""
    global _progress, _open_tasks
    if not enabled():
        yield lambda n=1, **fields: None
        return
    if _progress is None:
        _progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            # rich draws a live display only on a terminal: forced, it draws one on whatever stderr is.
            console=Console(stderr=True, force_terminal=forced() or None), transient=True)
        _progress.start()
    task_id = _progress.add_task(description, total=total, info="")
    _open_tasks += 1
    try:
        yield lambda n=1, **fields: _progress.update(task_id, advance=n, **fields)
    finally:
        _progress.remove_task(task_id)
        _open_tasks -= 1
        if _open_tasks == 0:
            _progress.stop()
            _progress = None
