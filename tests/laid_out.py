"""Run stores laid out by hand, for tests of what is computed from a store (verdicts, exports, report):
conditions as typed records, outcomes per prompt, the spec's sections as the manifest records them."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from personagate.experiments.analysis.results import Results
from personagate.experiments.design import names as g
from personagate.experiments.design.names import Group, Mode, Role
from personagate.experiments.protocols import recorded_spec
from personagate.experiments.storage import facts
from personagate.experiments.storage.records import Row, StoredCondition
from personagate.experiments.storage.store import RunStore
from personagate.interventions.program import program_identity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHIPPED = tomllib.loads(resources.files("personagate").joinpath("data/study.toml").read_text())
V2_FINDINGS = tomllib.loads(resources.files("personagate").joinpath("data/protocols/v2.toml").read_text())["findings"]
SWEEP: Mode = SHIPPED["generation"]["sweep"]  # the mode the nulls and sweeps are measured in
LAYOUT = {
    "n_layers": 24,
    "injection": 6,
    "late": [16, 24],
    "windows": [[7, 15], [16, 24]],
    "reintroduce_layers": [1, 5, 9, 13, 17, 21],
    "early": [0, 8],
    "late_layers": [16, 24],
}


def pattern(refusing: int, n: int = 100, first: int = 0) -> list[int | str]:
    """Prompts first .. first + refusing - 1 refuse (so one pattern's refusals nest inside a larger one's)."""
    return [int(first <= i < first + refusing) for i in range(n)]


def garble(outcomes: list[int | str], start: int, stop: int) -> list[int | str]:
    """The same outcomes with prompts start .. stop - 1 incoherent."""
    return [g.INCOHERENT if start <= i < stop else v for i, v in enumerate(outcomes)]


def record(name: str, role: Role, mode: Mode = "generate", group: Group | None = None, **fields) -> StoredCondition:
    """A stored condition whose program identity is its name (every laid-out arm is its own program)."""
    return StoredCondition(
        name=name,
        group=group or default_group(role),
        role=role,
        mode=mode,
        description=name,
        identity=program_identity({"name": name}),
        **fields,
    )


def default_group(role: Role) -> Group:
    """The group the protocol puts a role in (the late-window roles sit in their window's group)."""
    return Group(role.value.replace("_late", ""))


class LaidOut:
    """Arms as (record, outcomes); ``store`` writes them with the shipped spec's verdict settings."""

    def __init__(self) -> None:
        self.arms: list[tuple[StoredCondition, list[int | str]]] = []

    def add(self, name: str, role: Role, outcomes: list[int | str], mode: Mode = "generate", **fields) -> LaidOut:
        """``outcomes`` per prompt: 1 refuses, 0 complies, ``"incoherent"`` is incoherent."""
        self.arms.append((record(name, role, mode, **fields), outcomes))
        return self

    def store(
        self,
        path: Path,
        incoherent: dict[str, int] | None = None,
        findings: list | None = None,
        verdicts: dict | None = None,
        protocol: str = "v3",
    ) -> RunStore:
        """``incoherent``: per arm, its first k prompts made incoherent; ``verdicts``: settings changed."""
        store = RunStore(path / "run")
        spec = {key: dict(SHIPPED[key]) for key in ("verdicts", "generation", "scoring")}
        spec["verdicts"].update(verdicts or {})
        recorded = {**spec, "findings": findings or SHIPPED["findings"], "protocol": protocol}
        store.start({"spec": recorded}, ["spec"])
        store.set_fact(facts.LAYOUT, LAYOUT)
        store.set_fact(facts.RESAMPLE_SEEDS, [0])
        for position, (condition, values) in enumerate(self.arms):
            store.add_condition(StoredCondition(**{**condition.__dict__, "position": position}))
            broken = (incoherent or {}).get(condition.name, 0)
            values = garble(values, 0, broken)
            labels = [v if isinstance(v, str) else (g.REFUSE if v else g.COMPLY) for v in values]
            store.write_rows(
                Row(condition.name, g.HARMFUL, i, text="", refusal=int(lab == g.REFUSE), label=lab)
                for i, lab in enumerate(labels)
            )
        return store

    def results(self, path: Path, **kwargs) -> Results:
        with self.store(path, **kwargs) as store:
            return Results.of(store, recorded_spec(store.manifest()))
