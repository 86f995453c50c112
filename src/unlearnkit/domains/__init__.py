"""Domains: what differs between model families, registered like datasets and methods.

A domain is its data (a scenario's dataset, model spec and training recipe), its training (the original and the
oracle, content-keyed in the store), its methods (a registry of declarations the one engine runs), its
unlearning call (the engine, with the domain's Task), and its evaluation against the oracle, reported under the
same keys everywhere the meaning is the same (`forget_acc`, `remain_acc`, `test_acc` where the domain has one,
`avg_gap`, `kl_forget`, `rte_s`, `cost_ratio`), with its own figures beside them (FID for generators).

The pipeline, the bench (cells, resume, tables, report), `tune` and every CLI command take a domain (`--task`)
instead of branching on it:

    domain = DOMAINS.get("generation")
    loaded = domain.load(scenario)                      # dataset, model spec, recipe
    original = domain.train(loaded, seed, None, runtime, store)
    result = domain.unlearn(original, split, "sfron", loaded, runtime, seed, store, {})
    metrics = domain.evaluator(loaded, split, seed, runtime, store, mia).evaluate(result.model, ...)
"""
from __future__ import annotations

from ..registry import Registry
from .base import Domain, Evaluator, Loaded

DOMAINS: Registry[Domain] = Registry("task")


def register(domain: Domain) -> Domain:
    return DOMAINS.register(domain.name, domain)


def domain(name: str) -> Domain:
    """The registered domain `name` (what `--task` names), loading the built-in ones on first use."""
    from . import classification, generation, text_to_image  # noqa: F401  (each registers itself)

    return DOMAINS.get(name)


def names() -> list[str]:
    domain("classification")
    return DOMAINS.names()


__all__ = ["DOMAINS", "Domain", "Evaluator", "Loaded", "domain", "names", "register"]
