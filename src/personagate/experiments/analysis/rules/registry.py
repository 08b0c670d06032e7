"""The registry of verdict rules, as ``OPS`` is of intervention ops: a rule is one function in one
module of this package, registered by name with the finding keys (roles) it reads.

A spec's ``[[findings]]`` are checked against this registry before any model loads; the verdicts are
computed by looking rules up here. Nothing here imports the later stages at run time, so the spec
(``design.findings``) can read the registry without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from personagate.experiments.analysis.evidence import Evidence
    from personagate.experiments.analysis.verdict import Draft, Verdict
    from personagate.experiments.design.findings import Finding

Compute = Callable[["Evidence", "Finding"], "Draft"]


@dataclass(frozen=True)
class Rule:
    """``needs``: the finding keys (``treated``, ``reference``, ``family``, ``null``, ``baseline``) it reads."""

    name: str
    needs: tuple[str, ...]
    compute: Compute

    def decide(self, evidence: Evidence, finding: Finding) -> Verdict:
        """The rule's verdict on ``evidence``, sealed: nothing edits it after the rule returned."""
        return self.compute(evidence, finding).seal()


RULES: dict[str, Rule] = {}


def register(name: str, needs: tuple[str, ...]) -> Callable[[Compute], Compute]:
    """Decorator: ``@register("decrease", needs=("treated", "reference"))`` over the rule's function."""

    def add(compute: Compute) -> Compute:
        if name in RULES:
            raise RuntimeError(f"two verdict rules are named {name!r}")  # a programming error, not a user's
        RULES[name] = Rule(name, needs, compute)
        return compute

    return add
