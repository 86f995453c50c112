"""The interface every domain implements (see the package docstring). Each operation takes plain settings, as
the CLI reads them, and returns one JSON-ready dict under the common keys; a domain that cannot do an operation
says so in one line (UnsupportedError), listing the domains that can."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ..artifacts import Checkpoint
from ..errors import ConfigError
from ..registry import Registry
from ..runtime import Runtime

# The keys that mean the same in every domain (percentages, except the gaps' units follow their metrics).
COMMON_KEYS = ("forget_acc", "remain_acc", "test_acc", "avg_gap", "kl_forget", "rte_s", "cost_ratio")


def took(result: dict, verb: str) -> str:
    """How long a command's result took, or that it was found in the store (and how long it took when it ran)."""
    seconds = f"{result['wall_time_s']:.1f} s"
    return f"found in the store ({verb} in {seconds})" if result.get("reused") else seconds


class Domain:
    """One model family: its methods, its original and oracle training, unlearning a stored original, evaluating
    against the oracle, its bench and its tuning. Subclasses set the class attributes and override what they do."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""

    @property
    def methods(self) -> Registry:
        raise NotImplementedError

    def _unsupported(self, what: str) -> ConfigError:
        from . import supporting

        able = [n for n in supporting(what) if n != self.name]
        return ConfigError(f"`{what} --task {self.name}` is not available; {what} runs with --task "
                           f"{' or '.join(able) or '(none)'} (see docs/extending.md)")

    def train(self, kind: str, settings: dict[str, Any], recipe: dict[str, Any], runtime: Runtime,
              store: Path | None, force: bool) -> dict:
        """The original (kind 'original') or the oracle (kind 'oracle', without settings['forget']), trained or
        found in the store by content: {"checkpoint", "kind", "task", "wall_time_s", ...}."""
        raise self._unsupported("train")

    def describe_training(self, result: dict) -> str:
        return f"{result['kind']} model: {result['wall_time_s']:.1f} s -> {result['checkpoint']}"

    def forget(self, checkpoint: Checkpoint, method: str, forget: str, seed: int | None, hyperparameters: dict,
               runtime: Runtime, store: Path | None, force: bool) -> dict:
        """Unlearn `forget` from the stored original with `method`, store the result, and return its figures under
        the common keys (those the domain can measure without an oracle) with "checkpoint" and "method"."""
        raise self._unsupported("forget")

    def describe_forget(self, result: dict) -> str:
        figures = ", ".join(f"{k} {result[k]:.2f}" for k in COMMON_KEYS if isinstance(result.get(k), (int, float)))
        return f"{result['method']}: {figures} -> {result['checkpoint']}"

    def evaluate(self, model: Path, oracle: Path, original: Path | None, options: dict, runtime: Runtime) -> dict:
        """A stored model against its oracle: the common keys, the domain's own figures beside them."""
        raise self._unsupported("evaluate")

    def describe_evaluation(self, result: dict) -> str:
        lines = [f"{k:<12}{result[k]:.3f}" for k in (*COMMON_KEYS, *self.own_figures)
                 if isinstance(result.get(k), (int, float))]
        return "\n".join([*lines, *(f"note: {n}" for n in result.get("notes", []))])

    own_figures: ClassVar[tuple[str, ...]] = ()  # what the domain reports beside the common keys

    def bench(self, options: dict, runtime: Runtime, store: Path | None) -> dict:
        """The domain's bench: {"markdown", "csv", "json", ...} paths and its rows."""
        raise self._unsupported("bench")

    def tune(self, options: dict, runtime: Runtime, store: Path | None) -> dict:
        raise self._unsupported("tune")

    def refuse(self, options: dict, *names: str) -> None:
        """Options another domain's operation reads, refused here instead of silently ignored."""
        given = [n for n in names if options.get(n)]
        if given:
            raise ConfigError(f"{', '.join('--' + n.replace('_', '-') for n in given)}: not read with --task "
                              f"{self.name}")

    def owns(self, checkpoint: Checkpoint) -> bool:
        """Whether a stored checkpoint is this domain's (its record's "task")."""
        return (checkpoint.record.get("task") or "classification") == self.name
