"""Compiling a program to per-site edits, checked against the model's shape, in program order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from personagate.errors import PersonagateError
from personagate.interventions.edits import Site, SiteEdit, boundary
from personagate.interventions.program import Program


@dataclass
class Plan:
    """A program's edits laid out by site; at each site in program order."""

    sites: dict[Site, list[SiteEdit]] = field(default_factory=dict)

    def add(self, site: Site, edit: SiteEdit) -> None:
        self.sites.setdefault(site, []).append(edit)

    @property
    def needs_positions(self) -> bool:
        return any(e.scope != "all" for edits in self.sites.values() for e in edits)


def compile_program(
    program: Program,
    n_layers: int,
    hidden_size: int,
    device: torch.device,
    *,
    model_hash: str | None = None,
    force: bool = False,
    dtype: torch.dtype | None = None,
) -> Plan:
    """Check every op against the model's shape and lay its edits out per site, in program order.
    With the model's ``dtype``, an edit whose values are not finite or do not fit that dtype (a
    coefficient of 1e39, or 70000 on a float16 model) is an error here, before any forward pass."""
    plan = Plan()
    for op in program.ops:
        op.bound().check_fits(n_layers, hidden_size, model_hash=model_hash, force=force)
        for site, edit in op.edits(n_layers):
            _check_values(op.describe(n_layers), edit, dtype)
            plan.add(site, edit.to(device))
    return plan


def _check_values(what: str, edit: SiteEdit, dtype: torch.dtype | None) -> None:
    vector, value = edit.vector, float(edit.value)
    if not (bool(torch.isfinite(vector).all()) and math.isfinite(value)):
        raise PersonagateError(
            f"'{what}' gives values that are not finite (the coefficient times the vector overflowed)"
        )
    if dtype is not None and dtype.is_floating_point:
        limit = torch.finfo(dtype).max
        if float(vector.abs().max()) >= limit or abs(value) >= limit:
            raise PersonagateError(
                f"'{what}' gives values beyond what the model's {str(dtype).replace('torch.', '')} can hold "
                f"({limit:.3g}); use a smaller coefficient or value"
            )


def divergence_matrix(plans: Sequence[Plan], n_layers: int) -> list[list[int]]:
    """``d[i][j]``: the first boundary where programs ``i`` and ``j`` edit the stream differently.

    Rows running ``i`` and ``j`` on the same prompt are identical through ``resid_pre[b]`` for every
    ``b < d[i][j]`` (``n_layers + 1`` when the programs make the same edits everywhere), so a
    prefill can compute those layers once for both. Scoped edits count as edits (conservative).
    """
    keys: list[dict[int, list]] = []
    for plan in plans:
        by_boundary: dict[int, list] = {}
        for site, edits in sorted(plan.sites.items(), key=lambda item: (item[0][1], item[0][0])):
            by_boundary.setdefault(boundary(site), []).append((site[0], [e.key() for e in edits]))
        keys.append(by_boundary)
    same_everywhere = n_layers + 1
    matrix = [[same_everywhere] * len(plans) for _ in plans]
    for i in range(len(plans)):
        for j in range(i):
            differing = [b for b in keys[i].keys() | keys[j].keys() if keys[i].get(b) != keys[j].get(b)]
            matrix[i][j] = matrix[j][i] = min(differing, default=same_everywhere)
    return matrix
