"""The ``[[findings]]`` of a spec: each claim of the paper as a rule the run computes, declared before
the run and checked in full before any model loads: the rule exists (the needs of the rules in
``analysis.rules``, handed in: design does not import the analysis), it names every role it needs and
each is a role the protocol declares, ids are unique, and a finding ``requires`` only one declared
before it (so there is no cycle).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from personagate import checks
from personagate.errors import PersonagateError
from personagate.experiments.design.names import Role

ROLE_KEYS = ("treated", "reference", "steered", "control", "family", "null", "baseline", "named")
KINDS = ("as claimed", "specific")


@dataclass(frozen=True)
class Finding:
    """One claim as a rule: which roles it compares (see the rule's module in ``analysis.rules``)."""

    id: str
    claim: str
    rule: str
    kind: str = "as claimed"  # "as claimed": the paper's claim as stated; "specific": its specificity
    treated: Role | None = None
    reference: Role | None = None
    steered: Role | None = None  # the persona-steered arm a restoration starts from
    control: Role | None = None  # the same intervention on the unsteered model
    family: Role | None = None
    null: Role | None = None
    baseline: Role | None = None
    named: Role | None = None  # named comparators or nulls (the style personas)
    frame: str = ""  # the multi-turn form whose conversations the roles are looked up in
    requires: str = ""

    def optional(self, key: str) -> Role | None:
        value = getattr(self, key)
        return value if isinstance(value, Role) else None

    def role(self, key: str) -> Role:
        """The role under ``key``; the spec check guarantees every key the rule needs is set."""
        value = getattr(self, key)
        if not isinstance(value, Role):
            raise PersonagateError(f"finding {self.id!r} names no {key}")  # unreachable after build_findings
        return value

    def to_table(self) -> dict[str, Any]:
        """Its TOML table (roles as words, unset keys left out): what the manifest records."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}
        return {k: str(v) for k, v in out.items()}


def build_findings(
    tables: list[Any], rule_needs: Mapping[str, tuple[str, ...]], roles: frozenset[Role] | None = None
) -> tuple[Finding, ...]:
    """The declared rules, each checked against the rules' needs and the roles the protocol declares
    (``roles``; None: any role)."""
    out: list[Finding] = []
    keys = [f.name for f in dataclasses.fields(Finding)]
    for index, table in enumerate(tables):
        where = f"findings[{index}]"
        table = checks.table(table, where)
        checks.known_keys(table, keys, where)
        values = {k: checks.string(v, f"{where}.{k}") for k, v in table.items()}
        for key in ("id", "claim", "rule"):
            if not values.get(key):
                raise PersonagateError(f"{where}: '{key}' is required")
        needs = rule_needs.get(values["rule"])
        if needs is None:
            raise PersonagateError(f"{where}.rule = {values['rule']!r}; use one of {', '.join(sorted(rule_needs))}")
        for key in needs:
            if not values.get(key):
                raise PersonagateError(f"{where}: rule {values['rule']!r} needs '{key}'")
        if values.get("kind", KINDS[0]) not in KINDS:
            raise PersonagateError(f"{where}.kind = {values['kind']!r}; use one of {', '.join(map(repr, KINDS))}")
        roles_named = {k: Role.parse(values[k], f"{where}.{k}") for k in ROLE_KEYS if values.get(k)}
        for key, role in roles_named.items():
            if roles is not None and role not in roles:
                raise PersonagateError(
                    f"{where}.{key} = {str(role)!r} is not a role of this protocol; use one of "
                    f"{', '.join(sorted(map(str, roles)))}"
                )
        plain = {k: v for k, v in values.items() if k not in ROLE_KEYS}
        out.append(Finding(**plain, **roles_named))  # type: ignore[arg-type]
    seen: set[str] = set()
    for finding in out:
        if finding.id in seen:
            raise PersonagateError(f"findings: id {finding.id!r} is used twice")
        if finding.requires == finding.id:
            raise PersonagateError(f"findings: {finding.id!r} requires itself")
        if finding.requires and finding.requires not in seen:
            declared = any(f.id == finding.requires for f in out)
            where = "after it; declare it first" if declared else "which is not declared"
            raise PersonagateError(f"findings: {finding.id!r} requires {finding.requires!r}, {where}")
        seen.add(finding.id)
    return tuple(out)
