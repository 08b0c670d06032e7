"""``Results``: everything a run found, built once from its store and handed to the exports, the
report and the plots (``Results.of(store, spec)``): the recorded spec, the run's facts, the measurements
(rates, paired outcomes, guard), one summary per condition and the verdicts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from personagate.experiments.analysis.measurements import Measurements
from personagate.experiments.analysis.summary import ConditionSummary, summarise
from personagate.experiments.analysis.verdict import Verdict
from personagate.experiments.analysis.verdicts import compute_verdicts
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.names import HARMFUL, HEADLINE_ROLES, Group, Mode, Role
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.storage.facts import (
    CALIBRATION,
    COS_PERSONA_REFUSAL,
    DRIFT,
    GEOMETRY,
    LAYOUT,
    PERSONA_COEFF,
    PERSONA_COEFF_RULE,
    RESAMPLE_SEEDS,
    STOPPED,
    STOPPED_LEGACY,
)
from personagate.experiments.storage.profile import ProfileEntry, read_profile
from personagate.experiments.storage.store import RunStore


@dataclass(frozen=True)
class RunInfo:
    """Who made the run, as its manifest records it (the report's first line)."""

    model: str
    protocol: str
    spec_source: str
    package_version: str

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> RunInfo:
        spec = manifest.get("spec")
        return cls(
            model=str(manifest.get("model", "?")),
            protocol=str(spec.get("protocol", "")) if isinstance(spec, Mapping) else "",
            spec_source=str(manifest.get("spec_source", "")),
            package_version=str(manifest.get("package_version", "")),
        )


@dataclass(frozen=True)
class RunFacts:
    """What the run established as it went (the store's facts), typed."""

    layout: Layout | None
    persona_coeff: float | None
    persona_coeff_rule: str
    cos_persona_refusal: tuple[float, ...]
    resample_seeds: tuple[int, ...]
    stopped: str  # why the run stopped before the test stage (no coherent persona dose), else empty
    calibration: dict[str, object] | None  # the reintroduction doses' calibration, when calibrated
    geometry: dict[str, list[float]]  # protocol paper: cosine per layer between the vectors it made

    @classmethod
    def of(cls, store: RunStore) -> RunFacts:
        layout = store.fact(LAYOUT)
        coeff = store.fact(PERSONA_COEFF)
        return cls(
            layout=Layout.from_fact(layout) if layout else None,
            persona_coeff=float(coeff) if coeff is not None else None,
            persona_coeff_rule=str(store.fact(PERSONA_COEFF_RULE, "")),
            cos_persona_refusal=tuple(float(x) for x in store.fact(COS_PERSONA_REFUSAL) or ()),
            resample_seeds=tuple(int(x) for x in store.fact(RESAMPLE_SEEDS) or ()),
            stopped=str(store.fact(STOPPED, "") or store.fact(STOPPED_LEGACY, "")),
            calibration=store.fact(CALIBRATION),
            geometry=dict(store.fact(GEOMETRY) or {}),
        )


@dataclass(frozen=True)
class Results:
    path: Path
    info: RunInfo
    spec: StudySpec
    facts: RunFacts
    measurements: Measurements
    summary: tuple[ConditionSummary, ...]
    verdicts: tuple[Verdict, ...]
    readout: Mapping[str, list[list[float]]]  # per condition: [layer][prompt] projections
    judge_verdicts: tuple[Verdict, ...] = ()  # the same rules with the judge's labels, when a judge ran
    drift: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per multi-turn form
    profile: tuple[ProfileEntry, ...] = ()  # where the run's time went, per stage and kind of work

    @classmethod
    def of(cls, store: RunStore, spec: StudySpec) -> Results:
        """Read the store once and compute everything from it, under the spec it recorded
        (``protocols.recorded_spec(store.manifest())``: design reads it back with the registries)."""
        manifest = store.manifest()
        facts = RunFacts.of(store)
        measurements = Measurements.of(store)
        judged = measurements.under_judge()
        judge_verdicts = (
            compute_verdicts(judged, spec, facts.layout, facts.resample_seeds) if judged is not None else ()
        )
        return cls(
            path=store.path,
            info=RunInfo.of(manifest),
            spec=spec,
            facts=facts,
            measurements=measurements,
            summary=summarise(measurements, spec, facts.layout),
            verdicts=compute_verdicts(measurements, spec, facts.layout, facts.resample_seeds),
            readout=store.readout(),
            judge_verdicts=judge_verdicts,
            drift=store.facts_under(DRIFT),
            profile=read_profile(store),
        )

    # --- views the report and the plots share ----------------------------------------------------

    def main_verdicts(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.scope.is_main]

    def robustness(self) -> dict[str, list[str]]:
        """Per finding: its outcomes over the resamples (sweep-mode verdicts)."""
        out: dict[str, list[str]] = {}
        for v in self.verdicts:
            if not v.scope.is_main:
                out.setdefault(v.finding, []).append(v.outcome)
        return out

    def of_group(self, group: Group, resample: int | None = 0) -> list[ConditionSummary]:
        """The summaries of a group (of one resample, or of all with ``None``), in layout order."""
        return [s for s in self.summary if s.condition.group == group and resample in (None, s.condition.resample)]

    def find(self, role: Role, mode: Mode) -> ConditionSummary | None:
        """The first condition with ``role`` measured in ``mode`` on the test prompts of resample 0."""
        for s in self.summary:
            c = s.condition
            if c.role == role and c.mode == mode and c.resample == 0 and c.prompts == HARMFUL:
                return s
        return None

    def headline(self) -> list[ConditionSummary]:
        """The conditions a reader looks at first: every headline arm (resample 0, test prompts),
        measured the main way where it was, then the sanity arm beside the baseline measured the same way."""
        tested = [s for s in self.summary if s.condition.resample == 0 and s.condition.prompts == HARMFUL]
        main = next((s.condition.mode for s in tested if s.condition.role == Role.BASELINE), None)
        rows: list[ConditionSummary] = []
        for role in HEADLINE_ROLES:
            found = [s for s in tested if s.condition.role == role and s.condition.group != Group.REFERENCE]
            rows += [s for s in found if s.condition.mode == main] or found
        sanity = next((s for s in tested if s.condition.group == Group.SANITY), None)
        if sanity is not None:  # beside the baseline measured the same way: they must be equal
            rows += [
                s
                for s in tested
                if s.condition.role == Role.BASELINE and s.condition.mode == sanity.condition.mode and s not in rows
            ]
            rows.append(sanity)
        return rows
