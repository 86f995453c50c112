"""The bench in words: per scenario, how much of the way from doing nothing to the noise floor each method
closes, and which method comes closest to the oracle.

    closing fraction = (gap of doing nothing − gap of the method) / (gap of doing nothing − gap of the floor)

for Avg.Gap and for KL(oracle ‖ model) on D_f, from the scenario's mean rows: 1 means the method is as close to
the oracle as a second oracle (RT′, another seed) is; 0 means no closer than the original model; above 1, closer
than the floor (within noise of it); below 0, further than doing nothing. Where doing nothing is already within
the floor on both, there is nothing to forget and no fraction is given. Beside it, `per_seed_closing` is the mean
of each seed's own fraction (a seed whose doing nothing is within its floor has none): the figure the defaults'
targets are stated in (docs/defaults.md).
"""
from __future__ import annotations

import math

from .runner import NOISE_FLOOR, ORACLE, ORIGINAL, REFERENCE_ROWS

CLOSED = ("avg_gap", "kl_forget")


def seed_fractions(runs: dict[int, dict], nothing: dict[int, dict], floor: dict[int, dict]) -> dict[int, dict]:
    """Per seed a method finished beside doing nothing and the floor (seed -> metrics), its closing fraction for
    each figure of CLOSED: NaN where that seed's doing nothing is within its floor, or the domain measures no KL."""
    return {s: {key: closing_fraction(nothing[s].get(key), floor[s].get(key), runs[s].get(key)) for key in CLOSED}
            for s in sorted(runs) if s in nothing and s in floor}


def per_seed_closing(runs: dict[int, dict], nothing: dict[int, dict], floor: dict[int, dict]) -> dict[str, float]:
    """Per figure of CLOSED, the mean of `seed_fractions` over the seeds that have one; NaN where none has."""
    fractions = seed_fractions(runs, nothing, floor).values()
    means = {}
    for key in CLOSED:
        values = [f[key] for f in fractions if not math.isnan(f[key])]
        means[key] = math.fsum(values) / len(values) if values else math.nan
    return means


def within_floor(nothing: float, floor: float) -> bool:
    """Whether doing nothing is already as close to the oracle as the floor. A tie counts: Avg.Gap is a mean of
    gaps on a grid of 100/n points, and two equal gaps summed in another order differ in the last bits, which as a
    denominator would make the fraction ±1e14."""
    return nothing <= floor or math.isclose(nothing, floor, rel_tol=1e-9, abs_tol=1e-12)


def closing_fraction(nothing: float, floor: float, value: float) -> float:
    """(nothing − value) / (nothing − floor); NaN when doing nothing is already within the floor."""
    if any(v is None or math.isnan(v) for v in (nothing, floor, value)) or within_floor(nothing, floor):
        return math.nan
    return (nothing - value) / (nothing - floor)


def assess(rows: list[dict]) -> dict:
    """Add `closing_avg_gap` and `closing_kl_forget` to every method row of one scenario's summary, and return
    the scenario's verdict: whether there is anything to forget, and the method closest to the oracle."""
    by_name = {r["method"]: r for r in rows}
    nothing, floor = by_name.get(ORIGINAL), by_name.get(NOISE_FLOOR)
    if nothing is None or floor is None or ORACLE not in by_name:
        missing = ("no oracle for this scenario: its rows stand beside doing nothing" if ORACLE not in by_name else
                   "no second oracle (RT′, the noise floor) in this run: no closing fractions" if floor is None else
                   "no Original row (doing nothing) to compare with")
        return {"nothing_to_forget": None, "closest": None, "sentence": missing[0].upper() + missing[1:] + "."}
    empty = all(within_floor(nothing[k], floor[k]) for k in CLOSED)
    for row in rows:
        for key in CLOSED:
            row[f"closing_{key}"] = (math.nan if row["method"] in (ORACLE, NOISE_FLOOR, ORIGINAL) or empty
                                     else closing_fraction(nothing[key], floor[key], row[key]))
    methods = [r for r in rows if r["method"] not in REFERENCE_ROWS and not math.isnan(r["avg_gap"])]
    if empty:
        sentence = (f"Nothing to forget: doing nothing is already within the noise floor (Avg.Gap "
                    f"{nothing['avg_gap']:.2f} vs RT′ {floor['avg_gap']:.2f}, KL {nothing['kl_forget']:.3f} vs "
                    f"{floor['kl_forget']:.3f}).")
        return {"nothing_to_forget": True, "closest": None, "sentence": sentence}
    if not methods:
        return {"nothing_to_forget": False, "closest": None, "sentence": "no method finished"}
    # Closest to the oracle: the smallest sum of the two gaps, each relative to doing nothing's.
    closest = min(methods, key=lambda r: sum(r[k] / max(nothing[k], 1e-12) for k in CLOSED))
    closed = [_closed(closest, nothing, floor, key, name) for key, name in zip(CLOSED, ("Avg.Gap", "KL"))]
    sentence = f"Closest to the oracle: {closest['method']}, {closed[0]}; {closed[1]}."
    return {"nothing_to_forget": False, "closest": closest["method"], "sentence": sentence}


def _closed(row: dict, nothing: dict, floor: dict, key: str, name: str) -> str:
    if nothing[key] > floor[key]:
        return f"closing {row[f'closing_{key}']:.0%} of the way to the floor in {name}"
    return (f"nothing to close in {name} ({row[key]:.3g}; doing nothing's {nothing[key]:.3g} is already within the "
            f"floor's {floor[key]:.3g})")
