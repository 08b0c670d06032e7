"""``Program``: an ordered list of ops, and reading ops of any registered kind from a table or a flag."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from personagate import checks
from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.interventions.ops import OPS, Op, is_required

Resolver = Callable[[str], Direction]


def op_from_table(table: Any, where: str, *, text: bool = False) -> Op:
    """An op of any registered kind from its table (directions left as references)."""
    table = checks.table(table, where)
    kind = table.get("op")
    if not isinstance(kind, str) or kind not in OPS:
        kinds = " or ".join(f'"{k}"' for k in OPS)
        raise PersonagateError(f"{where}: 'op' must be {kinds}, got {kind!r}")
    return OPS[kind].from_table(table, where, text=text)


def op_from_flag(kind: str, text: str) -> Op:
    """``--add persona.safetensors,0.5,all`` and the like: the flag's fields in the op's ``flag_fields`` order."""
    cls = OPS[kind]
    parts = text.split(",")
    required = sum(is_required(cls, f) for f in cls.flag_fields)
    where = f"--{kind} {text!r}"
    if not required <= len(parts) <= len(cls.flag_fields):
        raise PersonagateError(f"{where}: expected {cls.flag_metavar()}")
    table = {"op": kind, **{name: part.strip() for name, part in zip(cls.flag_fields, parts, strict=False)}}
    return cls.from_table(table, where, text=True)


@dataclass(frozen=True)
class Program:
    """An ordered list of ops; at a shared site they apply in this order."""

    ops: tuple[Op, ...] = ()

    def __init__(self, ops: Sequence[Op] = ()) -> None:
        object.__setattr__(self, "ops", tuple(ops))
        for op in self.ops:
            if not isinstance(op, Op):
                raise PersonagateError(
                    f"{op!r} is not an intervention op ({', '.join(c.__name__ for c in OPS.values())})"
                )

    def then(self, *ops: Op) -> Program:
        return Program(self.ops + ops)

    def __len__(self) -> int:
        return len(self.ops)

    def bind(self, resolve: Resolver | dict[str, Direction]) -> Program:
        """Every op's direction reference resolved (a dict is looked up by key)."""
        lookup = resolve.__getitem__ if isinstance(resolve, dict) else resolve
        return Program([op.bind(lookup) for op in self.ops])

    def describe(self, n_layers: int | None = None) -> str:
        """One numbered line per op, in the order they apply."""
        if not self.ops:
            return "no intervention (the model's own forward pass)"
        return "\n".join(f"{i + 1}. {op.describe(n_layers)}" for i, op in enumerate(self.ops))

    def summary(self, n_layers: int | None = None) -> str:
        """The same words on one line (for tables)."""
        if not self.ops:
            return "no intervention"
        return "; then ".join(op.describe(n_layers) for op in self.ops)

    def to_table(self) -> dict[str, Any]:
        return {"ops": [op.to_table() for op in self.ops]}

    def identity(self) -> str:
        """A stable hash of the table form: two programs that edit the same sites in the same way with
        the same direction references share it, whatever their words (which change with wording, and
        never decide what a program is). 16 hex digits of SHA-256 over canonical JSON."""
        return program_identity(self.to_table())

    @classmethod
    def from_table(cls, table: Any, where: str) -> Program:
        table = checks.table(table, where)
        checks.known_keys(table, ("ops",), where)
        ops = checks.listing(table.get("ops", []), f"{where}: ops")
        return cls([op_from_table(t, f"{where}: ops[{i}]") for i, t in enumerate(ops)])


def program_identity(table: dict[str, Any]) -> str:
    """The identity of a program given by its table form (see ``Program.identity``)."""
    text = json.dumps(table, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
