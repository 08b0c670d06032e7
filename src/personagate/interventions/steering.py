"""``steer``: the only way to change a forward pass. Hooks, the steering handle, and the edit kernels.

Sites (DESIGN.md) are hooked where ``hooks.site_module`` says, each hook in front of any other.

One program is the one-row case of several: ``steer(model, [p0, p1, ...])`` runs program
``handle.row_programs[i]`` on batch row ``i`` (masks, not indexing), each program keeping its own
order at every site. Every handle goes into a list created before anything is registered and all
are removed in ``finally``: no hook survives the context, even when registration fails half-way.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from personagate.errors import PersonagateError
from personagate.interventions.compile import Plan, compile_program, divergence_matrix
from personagate.interventions.edits import CONVERSATION_SCOPES, Site, SiteEdit
from personagate.interventions.hooks import register_site, site_module
from personagate.interventions.ops import Op
from personagate.interventions.program import Program
from personagate.models.adapters import ArchitectureAdapter, adapter_for
from personagate.models.loading import ChatModel, config_hash

RowEdit = tuple[int, SiteEdit]  # (program index, edit)


class Steering:
    """The handle ``steer`` yields: which rows run which program, and which positions are prompt.

    With left padding every row's prompt ends at the same padded index, so one prompt length serves
    the batch. It is inferred from each forward pass that starts with an empty cache, or set with
    ``set_prompt_length`` (e.g. when re-running prompt + generated tokens without a cache).
    """

    def __init__(
        self, n_programs: int, divergence: list[list[int]], prefix_identities: Sequence[Hashable] | None = None
    ) -> None:
        self.n_programs = n_programs
        self.divergence = divergence
        self._prefix_identities = list(prefix_identities or [()] * n_programs)
        self.prompt_length: int | None = None
        self._inferred: int | None = None
        self._offset = 0
        self._rows: torch.Tensor | None = None
        self._turns: dict[str, torch.Tensor] | None = None  # conversation scope -> bool [rows, prompt positions]
        self._turn_rows: torch.Tensor | None = None  # the batch's rows among the turn masks' (None: the same)

    # --- rows -------------------------------------------------------------------------------------

    def set_rows(
        self, program_ids: Sequence[int] | torch.Tensor, device: torch.device, turn_rows: Sequence[int] | None = None
    ) -> None:
        """The program index of every row of the batch about to run (ignored with one program), and
        which rows of the turn masks they are (a prefill runs a shared header once, or one row per class)."""
        if self.n_programs > 1:
            self._rows = torch.as_tensor(program_ids, dtype=torch.long, device=device)
        if self._turns is not None:
            self._turn_rows = None if turn_rows is None else torch.as_tensor(turn_rows, dtype=torch.long, device=device)

    def prefix_identity(self, program: int) -> Hashable:
        """What the program does to a shared prompt prefix that ends before the probe turn: nothing (the
        empty tuple) when every edit is scoped to the probe, the last prompt token or the reply, so
        the unsteered keys and values serve it; else its edits."""
        return self._prefix_identities[program]

    def set_turns(self, masks: dict[str, torch.Tensor] | None, device: torch.device | None = None) -> None:
        """Per row, the prompt positions (in cache coordinates) of each conversation scope; None: no
        conversation. Moved to ``device`` once, not at every hook call."""
        if masks is not None and device is not None:
            masks = {scope: mask.to(device) for scope, mask in masks.items()}
        self._turns, self._turn_rows = masks, None

    def keep(self, index: torch.Tensor) -> None:
        """Finished rows left the batch: keep the rows at ``index``."""
        if self._rows is not None:
            self._rows = self._rows[index]
        if self._turns is not None:
            self._turn_rows = index if self._turn_rows is None else self._turn_rows[index]

    def row_mask(self, program: int, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor | None:
        """``[B, 1, 1]``: 1 for rows running ``program``; None when every row runs it."""
        if self.n_programs == 1:
            return None
        if self._rows is None:
            raise PersonagateError("steering several programs: set the rows' programs (set_rows) before a forward pass")
        rows = self._rows if device is None or self._rows.device == device else self._rows.to(device)
        return (rows == program).to(dtype).view(-1, 1, 1)

    # --- positions --------------------------------------------------------------------------------

    def set_prompt_length(self, length: int | None) -> None:
        self.prompt_length = length

    def observe(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Pre-hook on the backbone: how far into the sequence this forward pass starts."""
        tokens = kwargs.get("input_ids")
        if tokens is None:
            tokens = kwargs.get("inputs_embeds")
        if tokens is None and args:
            tokens = args[0]
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        self._offset = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        if self._offset == 0 and tokens is not None:
            self._inferred = int(tokens.shape[1])

    def prompt_mask(self, length: int, device: torch.device) -> torch.Tensor:
        """Bool ``[length]``: True where the position in this forward pass holds a prompt token."""
        return self._positions(length, device) < self._prompt()

    def scope_mask(self, scope: str, length: int, device: torch.device) -> torch.Tensor:
        """Bool ``[length]`` (``[B, length]`` for a conversation scope): the positions of this forward
        pass that ``scope`` covers."""
        positions = self._positions(length, device)
        if scope in CONVERSATION_SCOPES:
            return self._turn_mask(scope, positions)
        if scope == "prompt":
            return positions < self._prompt()
        if scope == "generated":
            return positions >= self._prompt()
        return positions == self._prompt() - 1  # "last": where the first reply token is predicted

    def _turn_mask(self, scope: str, positions: torch.Tensor) -> torch.Tensor:
        if self._turns is None:
            raise PersonagateError(
                f"scope {scope!r} covers turns of a conversation; these prompts were not given as conversations"
            )
        masks = self._turns[scope].to(positions.device)
        if self._turn_rows is not None:
            masks = masks[self._turn_rows.to(positions.device)]
        width = masks.shape[1]
        inside = masks[:, positions.clamp(max=width - 1)]
        return torch.where(positions < width, inside, torch.ones_like(inside))  # generated tokens: always

    def _prompt(self) -> int:
        prompt = self.prompt_length if self.prompt_length is not None else self._inferred
        if prompt is None:
            raise PersonagateError("a scoped op ran before any prompt was seen; call set_prompt_length")
        return prompt

    def _positions(self, length: int, device: torch.device) -> torch.Tensor:
        return torch.arange(self._offset, self._offset + length, device=device)


def apply_edits(hidden: torch.Tensor, edits: list[RowEdit], steering: Steering) -> torch.Tensor:
    """Apply a site's edits in order, each confined to its program's rows and its token scope.

    Two kernels per clamp (a GEMV and a fused multiply-subtract): in fp32 the removal is exact to
    rounding; in bf16 the coefficient carries bf16 precision.
    """
    masks: dict[str, torch.Tensor] = {}
    for program, edit in edits:
        vector = edit.cast(hidden.dtype)
        weight = steering.row_mask(program, hidden.dtype, hidden.device)
        if edit.scope != "all":
            if edit.scope not in masks:
                masks[edit.scope] = steering.scope_mask(edit.scope, hidden.shape[-2], hidden.device)
            keep = masks[edit.scope].unsqueeze(-1).to(hidden.dtype)
            weight = keep if weight is None else weight * keep
        if edit.kind == "add":
            hidden = hidden + vector if weight is None else torch.addcmul(hidden, weight, vector)
        else:
            coef = (hidden @ vector).unsqueeze(-1)
            if edit.value:
                coef = coef - edit.value
            if weight is not None:
                coef = coef * weight
            hidden = torch.addcmul(hidden, coef, vector, value=-1)
    return hidden


def _unwrap(model: ChatModel | nn.Module, adapter: ArchitectureAdapter | None) -> tuple[nn.Module, ArchitectureAdapter]:
    if isinstance(model, ChatModel):
        return model.model, adapter or model.adapter
    return model, adapter_for(model, adapter)


def _as_programs(program: Program | Sequence[Op] | Sequence[Program]) -> list[Program]:
    if isinstance(program, Program):
        return [program]
    items = list(program)
    if items and all(isinstance(p, Program) for p in items):
        return items  # type: ignore[return-value]
    return [Program(items)]  # type: ignore[arg-type]


@contextmanager
def steer(
    model: ChatModel | nn.Module,
    program: Program | Sequence[Op] | Sequence[Program],
    *,
    adapter: ArchitectureAdapter | None = None,
    force: bool = False,
) -> Iterator[Steering]:
    """Apply ``program`` to every forward pass of ``model`` inside the ``with`` block, and only there.

    A list of programs runs one program per batch row (``handle.set_rows``): conditions of a grid
    side by side in one batch, each row untouched by the other rows' programs. On a CPU, decoding
    streams every weight once per step whatever the batch, so that divides the decode cost by the
    number of conditions.
    """
    programs = _as_programs(program)
    module, adapter = _unwrap(model, adapter)
    blocks = adapter.get_blocks(module)
    n_layers, hidden = len(blocks), int(module.config.hidden_size)
    model_hash = config_hash(module.config)
    cpu = torch.device("cpu")
    dtype = next(module.parameters()).dtype
    plans = [
        compile_program(p, n_layers, hidden, cpu, model_hash=model_hash, force=force, dtype=dtype) for p in programs
    ]
    devices = site_devices(adapter, blocks, {site for plan in plans for site in plan.sites})
    sites: dict[Site, list[RowEdit]] = {}
    for index, plan in enumerate(plans):
        for site, edits in plan.sites.items():  # each vector on the device of the module its hook sits on
            sites.setdefault(site, []).extend((index, edit.to(devices[site])) for edit in edits)
    divergence = divergence_matrix(plans, n_layers) if len(plans) > 1 else [[n_layers + 1]]
    steering = Steering(len(plans), divergence, [prefix_identity(plan) for plan in plans])
    handles: list[RemovableHandle] = []
    try:
        _register(module, adapter, blocks, sites, plans, steering, handles)
        yield steering
    finally:
        for handle in handles:
            handle.remove()


# Scopes that never reach a shared prefix (which ends before the probe turn and the last prompt token).
AFTER_PREFIX = ("probe", "generated", "last")


def prefix_identity(plan: Plan) -> Hashable:
    edits = [(site, edit.key()) for site, site_edits in plan.sites.items() for edit in site_edits]
    if all(key[1] in AFTER_PREFIX for _, key in edits):  # a key is (kind, scope, value, vector)
        return ()
    return tuple(sorted(edits, key=lambda item: (item[0][1], item[0][0])))


def module_device(module: nn.Module) -> torch.device:
    """Where a module computes: accelerate's execution device when the model was dispatched over several
    devices (``device_map``), else where its parameters live."""
    hook = getattr(module, "_hf_hook", None)
    execution = getattr(hook, "execution_device", None)
    if execution is not None:
        return torch.device(execution) if not isinstance(execution, int) else torch.device("cuda", execution)
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def site_devices(adapter: ArchitectureAdapter, blocks: nn.ModuleList, sites: set[Site]) -> dict[Site, torch.device]:
    """The device of each site's hook module (see ``hooks.site_module``)."""
    return {site: module_device(site_module(adapter, blocks, site)) for site in sites}


def _register(
    module: nn.Module,
    adapter: ArchitectureAdapter,
    blocks: nn.ModuleList,
    sites: dict[Site, list[RowEdit]],
    plans: Sequence[Plan],
    steering: Steering,
    handles: list[RemovableHandle],
) -> None:
    """Register one hook per site (appending each handle as soon as it exists, for the caller's finally)."""
    if any(plan.needs_positions for plan in plans):
        backbone = adapter.get_backbone(module)
        handles.append(backbone.register_forward_pre_hook(steering.observe, with_kwargs=True, prepend=True))
    for site, edits in sorted(sites.items(), key=lambda item: (item[0][1], item[0][0])):
        handles.append(register_site(adapter, blocks, site, partial(apply_edits, edits=edits, steering=steering)))
