"""The reintroduction doses, calibrated on harmless validation prompts: per layer, the fraction of the
residual norm at which adding the refusal direction makes the unsteered model refuse each target
share of harmless prompts (interpolated in log-dose between the grid points that bracket it), kept
only up to the coherence limit (the guard of the grid point above it within ``max_nll_delta``).

Equal doses are then equal effects: "refusal added back at layer 5 at the 50% dose" does to harmless
prompts what it does at layer 21, so comparing layers compares depth, not dose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from personagate.experiments.analysis.measurements import Measurements
from personagate.experiments.design.names import Role


@dataclass(frozen=True)
class Calibration:
    """Per layer: the doses found (target rate, residual-norm fraction) and the targets left out, with why."""

    doses: dict[int, list[tuple[float, float]]]
    missing: dict[int, list[str]]
    curves: dict[int, list[tuple[float, float, float]]]  # per layer: (fraction, induced rate, guard)

    def to_fact(self) -> dict[str, object]:
        return {
            "doses": {str(k): v for k, v in self.doses.items()},
            "missing": {str(k): v for k, v in self.missing.items()},
            "curves": {str(k): v for k, v in self.curves.items()},
        }

    @classmethod
    def from_fact(cls, fact: dict) -> Calibration:
        return cls(
            {int(k): [(float(a), float(b)) for a, b in v] for k, v in fact["doses"].items()},
            {int(k): list(v) for k, v in fact["missing"].items()},
            {int(k): [tuple(x) for x in v] for k, v in fact["curves"].items()},  # type: ignore[misc]
        )


def calibrate(measurements: Measurements, targets: Sequence[float], max_nll_delta: float) -> Calibration:
    """The calibrated doses from the calibration conditions' first-token refusal rates and guards."""
    by_layer: dict[int, list[tuple[float, float, float]]] = {}
    unsteered = [c for c in measurements.conditions if c.role == Role.CALIBRATION and not c.dose]
    base = measurements.rates[unsteered[0].name].refusal_rate if unsteered else 0.0
    for c in measurements.conditions:
        if c.role != Role.CALIBRATION or c.axis is None or not c.dose:
            continue
        rate = measurements.rates[c.name].refusal_rate
        guard = measurements.guard.get(c.name, math.nan)
        by_layer.setdefault(int(c.axis), []).append((float(c.dose), rate, guard))
    doses: dict[int, list[tuple[float, float]]] = {}
    missing: dict[int, list[str]] = {}
    for layer, curve in sorted(by_layer.items()):
        curve.sort()
        found, left = [], []
        for target in targets:
            if target <= base:  # the unsteered model refuses that often already: nothing to induce
                left.append(f"{target:g}: at or below the unsteered rate {base:.0%}")
                continue
            dose, why = _crossing(curve, target, max_nll_delta)
            if dose is None:
                left.append(f"{target:g}: {why}")
            else:
                found.append((float(target), dose))
        doses[layer], missing[layer] = found, left
        by_layer[layer] = curve
    return Calibration(doses, missing, by_layer)


def _crossing(curve: list[tuple[float, float, float]], target: float, limit: float) -> tuple[float | None, str]:
    """The log-interpolated fraction where the induced rate first reaches ``target``, or why there is none."""
    previous: tuple[float, float, float] | None = None
    for fraction, rate, guard in curve:
        if math.isfinite(guard) and guard > limit:
            return None, f"incoherent before reaching it (guard +{guard:.2f} at x{fraction:g})"
        if rate >= target:
            if previous is None or rate == previous[1]:
                return fraction, ""
            f0, r0, _ = previous
            share = (target - r0) / (rate - r0)
            return math.exp(math.log(f0) + share * (math.log(fraction) - math.log(f0))), ""
        previous = (fraction, rate, guard)
    return None, "not reached within the grid"
