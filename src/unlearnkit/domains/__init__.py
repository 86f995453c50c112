"""Domains: what differs between model families, registered like datasets and methods.

A domain (`base.Domain`) is its methods (a registry of declarations the one engine runs, with the domain's Task),
its original and oracle training (content-keyed in the store), unlearning a stored original, evaluation against
the oracle, its bench and its tuning. Every CLI command looks the domain up (`--task`, or the checkpoint's
record) and calls it; none branches on the domain. The same keys mean the same in every domain
(`base.COMMON_KEYS`: forget_acc, remain_acc, test_acc where there is one, avg_gap, kl_forget, rte_s, cost_ratio),
with a domain's own figures (FID*) beside them.

    from unlearnkit.domains import domain
    generation = domain("generation")
    original = generation.train("original", {"data": "digits"}, {}, runtime, store, force=False)
"""
from __future__ import annotations

from ..artifacts import Checkpoint
from ..errors import CheckpointError
from ..registry import Registry
from .base import COMMON_KEYS, Domain

DOMAINS: Registry[Domain] = Registry("task")


def register(domain: Domain) -> Domain:
    return DOMAINS.register(domain.name, domain)


def _load_builtin() -> None:
    from . import classification, generation, text_to_image  # noqa: F401  (each registers itself)


def domain(name: str) -> Domain:
    """The registered domain `name` (what `--task` names); an unknown name is one line listing the known ones."""
    _load_builtin()
    return DOMAINS.get(name)


def names() -> list[str]:
    _load_builtin()
    return DOMAINS.names()


def supporting(operation: str) -> list[str]:
    """The domains that implement `operation` (one of train, forget, evaluate, bench, tune)."""
    return [n for n in names() if getattr(type(DOMAINS.get(n)), operation) is not getattr(Domain, operation)]


def domain_of(checkpoint: Checkpoint, task: str | None = None) -> Domain:
    """The domain a stored checkpoint belongs to (its record's task); a different `task` given is an error."""
    recorded = checkpoint.record.get("task") or "classification"
    if task is not None and task != recorded:
        raise CheckpointError(f"checkpoint '{checkpoint.path}' is a {recorded} model, not {task}: drop --task or "
                              f"pass --task {recorded}")
    return domain(recorded)


__all__ = ["COMMON_KEYS", "DOMAINS", "Domain", "domain", "domain_of", "names", "register", "supporting"]
