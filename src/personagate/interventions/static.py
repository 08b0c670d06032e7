"""Steering with fixed buffers, for decoding under CUDA graphs: the hooks read every vector from a tensor
allocated once, so loading another program of the same layout (the same sites, the same kinds of
edit) copies new values in place and a captured graph stays valid.

The layout of a program is, per site, how many adds (summed into one vector) and how many clamps it
makes, in order add-then-clamp. Programs that need something else (a clamp before an add at one
site, a token scope, several programs per batch) are not representable here: ``load`` says so in one
line, and the dynamic path (``steer``) runs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.utils.hooks import RemovableHandle

from personagate.errors import PersonagateError
from personagate.interventions.compile import compile_program
from personagate.interventions.edits import Site, SiteEdit
from personagate.interventions.hooks import register_site
from personagate.interventions.program import Program
from personagate.models.loading import ChatModel, config_hash

Layout = tuple[tuple[Site, bool, int], ...]  # (site, has an add, number of clamps), sorted by site


@dataclass
class _Slots:
    """The buffers of one site: an add vector, and per clamp a unit vector and a target value."""

    add: torch.Tensor | None
    units: list[torch.Tensor]
    values: list[torch.Tensor]

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.add is not None:
            hidden = hidden + self.add
        for unit, value in zip(self.units, self.values, strict=True):
            coef = (hidden @ unit).unsqueeze(-1) - value
            hidden = torch.addcmul(hidden, coef, unit, value=-1)
        return hidden


def layout_of(edits: dict[Site, list[SiteEdit]]) -> Layout:
    """The layout of a compiled program, or an error when it is not add-then-clamp with no scopes."""
    out = []
    for site, site_edits in sorted(edits.items(), key=lambda item: (item[0][1], item[0][0])):
        kinds = [e.kind for e in site_edits]
        if any(e.scope != "all" for e in site_edits):
            raise PersonagateError("static decoding runs ops on every token only; scoped ops need the dynamic path")
        if kinds != sorted(kinds):  # "add" < "clamp": every add before every clamp
            raise PersonagateError(
                f"at {site[0]}[{site[1]}] a clamp comes before an add; static decoding applies adds first, "
                "so run this program on the dynamic path"
            )
        out.append((site, "add" in kinds, kinds.count("clamp")))
    return tuple(out)


class StaticSteering:
    """Hooks registered once over fixed buffers; ``load`` fills them from a program of the same layout."""

    def __init__(self, chat: ChatModel, program: Program) -> None:
        self.chat = chat
        self.layout: Layout = ()
        self.slots: dict[Site, _Slots] = {}
        self._fill(program, first=True)

    def compile(self, program: Program) -> dict[Site, list[SiteEdit]]:
        """The program's edits per site, on the model's device (what ``layout_of`` reads)."""
        model = self.chat.model
        return compile_program(
            program,
            self.chat.n_layers,
            self.chat.hidden_size,
            self.chat.device,
            model_hash=config_hash(model.config),
            dtype=self.chat.dtype,
        ).sites

    def _fill(self, program: Program, first: bool = False) -> None:
        edits = self.compile(program)
        layout = layout_of(edits)
        if not first and layout != self.layout:
            raise PersonagateError(
                "this program edits other sites or kinds than the one the graph was captured for; "
                "make a new StaticSteering (a new capture) for it"
            )
        dtype = self.chat.dtype
        for site, site_edits in edits.items():
            adds = [e.vector for e in site_edits if e.kind == "add"]
            clamps = [e for e in site_edits if e.kind == "clamp"]
            add = torch.stack(adds).sum(0).to(dtype) if adds else None
            units = [e.vector.to(dtype) for e in clamps]
            values = [torch.tensor(e.value, dtype=dtype, device=self.chat.device) for e in clamps]
            if first:
                self.slots[site] = _Slots(add, units, values)
            else:  # in place: the captured graph keeps reading the same memory
                slot = self.slots[site]
                if add is not None and slot.add is not None:
                    slot.add.copy_(add)
                for old, new in zip(slot.units + slot.values, units + values, strict=True):
                    old.copy_(new)
        self.layout = layout

    def load(self, program: Program) -> None:
        """Another program with the same layout: its vectors and values copied into the buffers."""
        self._fill(program)

    @contextmanager
    def active(self) -> Iterator[StaticSteering]:
        """The hooks, registered in front of any others, removed on exit."""
        blocks = self.chat.adapter.get_blocks(self.chat.model)
        handles: list[RemovableHandle] = []
        try:
            for site, slot in self.slots.items():
                handles.append(register_site(self.chat.adapter, blocks, site, slot.apply))
            yield self
        finally:
            for handle in handles:
                handle.remove()
