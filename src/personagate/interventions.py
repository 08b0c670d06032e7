"""Typed intervention ops composed into an ordered ``Program``; ``steer`` applies one to a forward pass.

Sites (DESIGN.md): ``resid_pre[l]`` is the residual stream entering block ``l`` (``hidden_states[l]``
of a Hugging Face model). It is edited by a forward hook on block ``l-1``'s output (a pre-hook on
block 0 for ``l = 0``), registered *first* so that transformers' own ``output_hidden_states``
recorder sees the edited stream. ``attn_out[l]`` / ``mlp_out[l]`` are what block ``l`` adds to the
residual stream from attention and from the MLP.

At a shared site, ops apply in program order. ``steer`` registers every handle into a list created
before anything is registered and removes them all in ``finally``: no hook survives the context,
even when registration fails half-way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, Union

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.models.adapters import ArchitectureAdapter, adapter_for
from personagate.models.loading import ChatModel, config_hash

Scope = Literal["all", "prompt", "generated"]
_SCOPES = ("all", "prompt", "generated")
SiteKind = Literal["resid_pre", "attn_out", "mlp_out"]


@dataclass(frozen=True)
class Window:
    """Half-open block range ``[start, stop)``; ints are block indices, floats/fractions depth fractions."""

    start: int | float
    stop: int | float

    @classmethod
    def parse(cls, text: str) -> Window:
        """``"16:24"`` (blocks), ``"2/3:1"`` or ``"0.5:1.0"`` (depth fractions), ``"all"``."""
        if text.strip() == "all":
            return cls(0.0, 1.0)
        parts = text.split(":")
        if len(parts) != 2:
            raise PersonagateError(f"window {text!r} must look like START:STOP, e.g. 16:24 or 2/3:1")
        try:
            values = [_number(p.strip()) for p in parts]
        except ValueError:
            raise PersonagateError(f"window {text!r} must look like START:STOP, e.g. 16:24 or 2/3:1") from None
        return cls(values[0], values[1])

    @property
    def fractional(self) -> bool:
        return not (isinstance(self.start, int) and isinstance(self.stop, int))

    def resolve(self, n_layers: int) -> range:
        """The block indices of the window for a model with ``n_layers`` blocks."""
        if self.fractional:
            start, stop = round(float(self.start) * n_layers), round(float(self.stop) * n_layers)
        else:
            start, stop = int(self.start), int(self.stop)
        if not 0 <= start < stop <= n_layers:
            raise PersonagateError(
                f"window [{self.start}, {self.stop}) resolves to [{start}, {stop}), which is not a non-empty "
                f"range inside [0, {n_layers}); windows are half-open, start < stop"
            )
        return range(start, stop)

    def __str__(self) -> str:
        return f"[{self.start}, {self.stop})"


def _number(text: str) -> int | float:
    if "/" in text:
        return float(Fraction(text))
    if "." in text or "e" in text.lower():
        return float(text)
    return int(text)


LayerSpec = Union[int, Sequence[int], Window, Literal["all"]]


def resolve_layers(layers: LayerSpec, n_layers: int) -> list[int]:
    """Layer indices from an int, a list, a ``Window`` or ``"all"``; out of range is an error."""
    if isinstance(layers, str):
        if layers != "all":
            return list(Window.parse(layers).resolve(n_layers))
        return list(range(n_layers))
    if isinstance(layers, Window):
        return list(layers.resolve(n_layers))
    values = [layers] if isinstance(layers, int) else list(layers)
    for layer in values:
        if not isinstance(layer, int) or not 0 <= layer < n_layers:
            raise PersonagateError(f"layer {layer} is out of range; this model has layers 0..{n_layers - 1}")
    return values


def _as_direction(direction: Direction | torch.Tensor) -> Direction:
    return direction if isinstance(direction, Direction) else Direction(torch.as_tensor(direction))


def _check_scope(scope: str) -> None:
    if scope not in _SCOPES:
        raise PersonagateError(f"scope {scope!r} is not one of {', '.join(_SCOPES)}")


@dataclass(frozen=True)
class Add:
    """Add ``coeff * v_l`` to ``resid_pre[l]`` for each layer (``unit=True``: the unit vector)."""

    direction: Direction
    coeff: float
    layers: LayerSpec = "all"
    scope: Scope = "all"
    unit: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", _as_direction(self.direction))
        _check_scope(self.scope)
        if not math.isfinite(self.coeff):
            raise PersonagateError(f"coefficient {self.coeff} is not a finite number")

    def describe(self, n_layers: int | None = None) -> str:
        layers = _layers_text(self.layers, n_layers)
        what = "unit " if self.unit else ""
        scope = _scope_text(self.scope)
        return f"add {self.coeff:g} x {what}{self.direction.name} to the residual stream entering {layers}{scope}"


@dataclass(frozen=True)
class Ablate:
    """Project the direction out inside ``window``: at every block input, attention output and MLP output."""

    direction: Direction
    window: Window | tuple[int | float, int | float] | str = "all"
    scope: Scope = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", _as_direction(self.direction))
        window = self.window
        if isinstance(window, str):
            window = Window.parse(window)
        elif isinstance(window, tuple):
            window = Window(*window)
        object.__setattr__(self, "window", window)
        _check_scope(self.scope)

    def describe(self, n_layers: int | None = None) -> str:
        window = self.window
        assert isinstance(window, Window)
        where = f"blocks {_range_text(window.resolve(n_layers))}" if n_layers else f"window {window}"
        return (
            f"project {self.direction.name} out of the residual stream, attention and MLP outputs of "
            f"{where}{_scope_text(self.scope)}"
        )


Op = Union[Add, Ablate]


def _layers_text(layers: LayerSpec, n_layers: int | None) -> str:
    if n_layers is not None:
        return "blocks " + _range_text(resolve_layers(layers, n_layers))
    return f"layers {layers}"


def _range_text(layers: Sequence[int] | range) -> str:
    values = list(layers)
    if len(values) > 1 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values))


def _scope_text(scope: str) -> str:
    return {"all": "", "prompt": ", prompt tokens only", "generated": ", generated tokens only"}[scope]


@dataclass(frozen=True)
class Program:
    """An ordered list of ops; at a shared site they apply in this order."""

    ops: tuple[Op, ...] = ()

    def __init__(self, ops: Sequence[Op] = ()) -> None:
        object.__setattr__(self, "ops", tuple(ops))
        for op in self.ops:
            if not isinstance(op, (Add, Ablate)):
                raise PersonagateError(f"{op!r} is not an intervention op (Add or Ablate)")

    def then(self, *ops: Op) -> Program:
        return Program(self.ops + ops)

    def __len__(self) -> int:
        return len(self.ops)

    def describe(self, n_layers: int | None = None) -> str:
        if not self.ops:
            return "no intervention (the model's own forward pass)"
        return "\n".join(f"{i + 1}. {op.describe(n_layers)}" for i, op in enumerate(self.ops))


# --- compilation to sites -------------------------------------------------------------------------


@dataclass
class _SiteEdit:
    """One op's edit at one site: add ``vector``, or remove the component along unit ``vector``."""

    kind: Literal["add", "project"]
    vector: torch.Tensor
    scope: Scope
    _cast: dict[torch.dtype, torch.Tensor] = field(default_factory=dict)

    def cast(self, dtype: torch.dtype) -> torch.Tensor:
        """The vector in the residual stream's dtype, converted once rather than on every call."""
        if dtype not in self._cast:
            self._cast[dtype] = self.vector.to(dtype)
        return self._cast[dtype]


@dataclass
class _Plan:
    sites: dict[tuple[SiteKind, int], list[_SiteEdit]] = field(default_factory=dict)

    def add(self, site: tuple[SiteKind, int], edit: _SiteEdit) -> None:
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
) -> _Plan:
    """Check every op against the model's shape and lay its edits out per site, in program order."""
    plan = _Plan()
    for op in program.ops:
        op.direction.check_fits(n_layers, hidden_size, model_hash=model_hash, force=force)
        if isinstance(op, Add):
            for layer in resolve_layers(op.layers, n_layers):
                v = op.direction.unit_at(layer) if op.unit else op.direction.at(layer)
                plan.add(("resid_pre", layer), _SiteEdit("add", (op.coeff * v).to(device), op.scope))
        else:
            assert isinstance(op.window, Window)
            for layer in op.window.resolve(n_layers):
                if op.direction.at(layer).norm() == 0:
                    continue  # nothing lies along a zero vector: projecting it out is the identity
                u = op.direction.unit_at(layer).to(device)
                for kind in ("resid_pre", "attn_out", "mlp_out"):
                    plan.add((kind, layer), _SiteEdit("project", u, op.scope))
    return plan


def _boundary(kind: SiteKind, layer: int) -> int:
    """The residual-stream boundary an edit first changes: ``resid_pre[l]`` is boundary ``l``; what
    block ``l`` writes from attention or the MLP reaches the stream at boundary ``l + 1``."""
    return layer if kind == "resid_pre" else layer + 1


def divergence_matrix(plans: Sequence[_Plan], n_layers: int) -> list[list[int]]:
    """``d[i][j]``: the first boundary where programs ``i`` and ``j`` edit the stream differently.

    Rows running ``i`` and ``j`` on the same prompt are identical through ``resid_pre[b]`` for every
    ``b < d[i][j]`` (``n_layers + 1`` when the programs make the same edits everywhere), so a
    prefill can compute those layers once for both. Scoped edits count as edits (conservative).
    """
    keys: list[dict[int, list]] = []
    for plan in plans:
        by_boundary: dict[int, list] = {}
        for (kind, layer), edits in sorted(plan.sites.items(), key=lambda item: (item[0][1], item[0][0])):
            content = [(e.kind, e.scope, e.vector.detach().cpu().numpy().tobytes()) for e in edits]
            by_boundary.setdefault(_boundary(kind, layer), []).append((kind, content))
        keys.append(by_boundary)
    same_everywhere = n_layers + 1
    matrix = [[same_everywhere] * len(plans) for _ in plans]
    for i in range(len(plans)):
        for j in range(i):
            differing = [b for b in keys[i].keys() | keys[j].keys() if keys[i].get(b) != keys[j].get(b)]
            matrix[i][j] = matrix[j][i] = min(differing, default=same_everywhere)
    return matrix


# --- positions ------------------------------------------------------------------------------------


@dataclass
class Steering:
    """Handle yielded by ``steer``: knows which token positions of the current forward pass are prompt.

    With left padding every row's prompt ends at the same padded index, so one prompt length serves
    the batch. It is inferred from each forward pass that starts with an empty cache; set
    ``prompt_length`` to override (e.g. when re-running prompt + generated tokens without a cache).
    """

    program: Program
    prompt_length: int | None = None
    _inferred: int | None = None
    _offset: int = 0

    def _observe(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
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
        prompt = self.prompt_length if self.prompt_length is not None else self._inferred
        if prompt is None:
            raise PersonagateError("a scoped op ran before any prompt was seen; set Steering.prompt_length")
        positions = torch.arange(self._offset, self._offset + length, device=device)
        return positions < prompt


@dataclass
class RowSteering(Steering):
    """Handle yielded by ``steer_rows``: each batch row runs its own program.

    ``row_program`` holds, for every row of the batch now running, the index of its program; the
    caller sets it before a forward pass and narrows it (``keep``) when finished rows leave.
    """

    row_program: torch.Tensor | None = None
    divergence: list[list[int]] = field(default_factory=list)

    def set_rows(self, program_ids: Sequence[int] | torch.Tensor, device: torch.device) -> None:
        self.row_program = torch.as_tensor(program_ids, dtype=torch.long, device=device)

    def keep(self, index: torch.Tensor) -> None:
        assert self.row_program is not None
        self.row_program = self.row_program[index]

    def row_mask(self, program: int, dtype: torch.dtype) -> torch.Tensor:
        """``[B, 1, 1]``: 1 for rows running ``program``."""
        if self.row_program is None:
            raise PersonagateError("steer_rows: set the rows' programs (set_rows) before a forward pass")
        return (self.row_program == program).to(dtype).view(-1, 1, 1)


def _apply_edits(hidden: torch.Tensor, edits: list[_SiteEdit], steering: Steering) -> torch.Tensor:
    """Apply a site's edits in order. Two kernels per projection (a GEMV and a fused multiply-subtract):
    in fp32 the removal is exact to rounding; in bf16 the coefficient carries bf16 precision."""
    mask: torch.Tensor | None = None
    for edit in edits:
        vector = edit.cast(hidden.dtype)
        keep: torch.Tensor | None = None
        if edit.scope != "all":
            if mask is None:
                mask = steering.prompt_mask(hidden.shape[-2], hidden.device)
            keep = (mask if edit.scope == "prompt" else ~mask).unsqueeze(-1).to(hidden.dtype)
        if edit.kind == "add":
            hidden = hidden + vector if keep is None else torch.addcmul(hidden, keep, vector)
        else:
            coef = (hidden @ vector).unsqueeze(-1)
            if keep is not None:
                coef = coef * keep
            hidden = torch.addcmul(hidden, coef, vector, value=-1)
    return hidden


def _apply_row_edits(hidden: torch.Tensor, edits: list[tuple[int, _SiteEdit]], steering: RowSteering) -> torch.Tensor:
    """Like ``_apply_edits``, each edit confined to the rows of its program (masks, not indexing)."""
    mask: torch.Tensor | None = None
    for program, edit in edits:
        vector = edit.cast(hidden.dtype)
        rows = steering.row_mask(program, hidden.dtype)
        if edit.scope != "all":
            if mask is None:
                mask = steering.prompt_mask(hidden.shape[-2], hidden.device)
            rows = rows * (mask if edit.scope == "prompt" else ~mask).unsqueeze(-1).to(hidden.dtype)
        if edit.kind == "add":
            hidden = torch.addcmul(hidden, rows, vector)
        else:
            coef = (hidden @ vector).unsqueeze(-1) * rows
            hidden = torch.addcmul(hidden, coef, vector, value=-1)
    return hidden


def _output_hook(edits: Any, steering: Steering, apply: Any = None):
    apply = apply or _apply_edits

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (apply(output[0], edits, steering), *output[1:])
        return apply(output, edits, steering)

    return hook


def _input_hook(edits: Any, steering: Steering, apply: Any = None):
    apply = apply or _apply_edits

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (apply(args[0], edits, steering), *args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = apply(kwargs["hidden_states"], edits, steering)
        return args, kwargs

    return hook


def _unwrap(model: ChatModel | nn.Module, adapter: ArchitectureAdapter | None) -> tuple[nn.Module, ArchitectureAdapter]:
    if isinstance(model, ChatModel):
        return model.model, adapter or model.adapter
    return model, adapter_for(model, adapter)


@contextmanager
def steer(
    model: ChatModel | nn.Module,
    program: Program | Sequence[Op],
    *,
    adapter: ArchitectureAdapter | None = None,
    force: bool = False,
) -> Iterator[Steering]:
    """Apply ``program`` to every forward pass of ``model`` inside the ``with`` block, and only there."""
    program = program if isinstance(program, Program) else Program(program)
    module, adapter = _unwrap(model, adapter)
    blocks = adapter.get_blocks(module)
    n_layers, hidden = len(blocks), int(module.config.hidden_size)
    device = next(module.parameters()).device
    plan = compile_program(program, n_layers, hidden, device, model_hash=config_hash(module.config), force=force)
    steering = Steering(program=program)
    handles: list[RemovableHandle] = []
    try:
        _register(module, adapter, blocks, plan.sites, plan.needs_positions, steering, _apply_edits, handles)
        yield steering
    finally:
        for handle in handles:
            handle.remove()


def _register(
    module: nn.Module,
    adapter: ArchitectureAdapter,
    blocks: nn.ModuleList,
    sites: dict,
    needs_positions: bool,
    steering: Steering,
    apply: Any,
    handles: list[RemovableHandle],
) -> None:
    """Register one hook per site (appending each handle as soon as it exists, for the caller's finally)."""
    if needs_positions:
        handles.append(
            adapter.get_backbone(module).register_forward_pre_hook(steering._observe, with_kwargs=True, prepend=True)
        )
    for (kind, layer), edits in sorted(sites.items(), key=lambda item: (item[0][1], item[0][0])):
        if kind == "resid_pre" and layer == 0:
            hook = _input_hook(edits, steering, apply)
            handles.append(blocks[0].register_forward_pre_hook(hook, with_kwargs=True, prepend=True))
        elif kind == "resid_pre":
            handles.append(blocks[layer - 1].register_forward_hook(_output_hook(edits, steering, apply), prepend=True))
        else:
            block = blocks[layer]
            target = adapter.get_attn_out(block) if kind == "attn_out" else adapter.get_mlp_out(block)
            handles.append(target.register_forward_hook(_output_hook(edits, steering, apply), prepend=True))


@contextmanager
def steer_rows(
    model: ChatModel | nn.Module,
    programs: Sequence[Program],
    *,
    adapter: ArchitectureAdapter | None = None,
    force: bool = False,
) -> Iterator[RowSteering]:
    """Run several programs in one batch: row ``i`` runs ``programs[handle.row_program[i]]``.

    Each program keeps its own order at every site; rows of other programs are untouched by it.
    On a CPU, decoding streams every weight once per step whatever the batch, so running the
    conditions of a grid side by side divides the decode cost by the number of conditions.
    """
    module, adapter = _unwrap(model, adapter)
    blocks = adapter.get_blocks(module)
    n_layers, hidden = len(blocks), int(module.config.hidden_size)
    device = next(module.parameters()).device
    sites: dict[tuple[SiteKind, int], list[tuple[int, _SiteEdit]]] = {}
    needs_positions = False
    plans: list[_Plan] = []
    for index, program in enumerate(programs):
        plan = compile_program(program, n_layers, hidden, device, model_hash=config_hash(module.config), force=force)
        plans.append(plan)
        needs_positions = needs_positions or plan.needs_positions
        for site, edits in plan.sites.items():
            sites.setdefault(site, []).extend((index, edit) for edit in edits)
    steering = RowSteering(program=Program(), divergence=divergence_matrix(plans, n_layers))
    handles: list[RemovableHandle] = []
    try:
        _register(module, adapter, blocks, sites, needs_positions, steering, _apply_row_edits, handles)
        yield steering
    finally:
        for handle in handles:
            handle.remove()
