"""Where the protocol's arms sit in a given model: the injection layer, the projection windows
(downstream of the injection unless the spec allows otherwise), the reintroduction layers and the
early and late bands, resolved from the spec's depth fractions against the model's block count."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from personagate.errors import PersonagateError
from personagate.experiments.design.spec import StudySpec
from personagate.interventions.windows import Window


@dataclass(frozen=True)
class Layout:
    """Where things sit in this model: everything the conditions need that the spec leaves to the model."""

    n_layers: int
    injection: int
    late: tuple[int, int]
    windows: tuple[tuple[int, int], ...]
    reintroduce_layers: tuple[int, ...]
    early: tuple[int, int]
    late_layers: tuple[int, int]

    @classmethod
    def of(cls, spec: StudySpec, n_layers: int) -> Layout:
        injection = spec.persona_layer(n_layers)
        late = _blocks(spec.windows.late, n_layers)
        allow = spec.windows.contain_injection
        if not allow and late[0] <= injection < late[1]:
            raise PersonagateError(
                f"windows.late {spec.windows.late} = blocks [{late[0]}, {late[1]}) contains the injection layer "
                f"{injection}; move one of them, or set windows.contain_injection = true"
            )
        width = StudySpec.blocks(spec.windows.width, n_layers)
        stride = StudySpec.blocks(spec.windows.stride, n_layers)
        first = injection + 1 if spec.windows.placement == "downstream" else 0
        windows = [w for w in sliding(first, n_layers, width, stride) if allow or not w[0] <= injection < w[1]]
        if late not in windows:
            windows.append(late)
        if not windows:
            raise PersonagateError(
                f"no projection window fits after the injection layer {injection} of {n_layers} blocks; "
                "inject earlier (persona.layer) or narrow windows.width"
            )
        layers = tuple(range(spec.reintroduce.first_layer, n_layers, spec.reintroduce.layer_stride))
        return cls(
            n_layers=n_layers,
            injection=injection,
            late=late,
            windows=tuple(sorted(set(windows))),
            reintroduce_layers=layers,
            early=_blocks(spec.reintroduce.early, n_layers),
            late_layers=_blocks(spec.reintroduce.late, n_layers),
        )

    def to_fact(self) -> dict[str, Any]:
        """What the run store records (JSON)."""
        return asdict(self)

    @classmethod
    def from_fact(cls, fact: Mapping[str, Any]) -> Layout:
        """The layout a run recorded; a partial or edited record is an error naming the run."""
        try:
            return cls(
                n_layers=int(fact["n_layers"]),
                injection=int(fact["injection"]),
                late=_pair(fact["late"]),
                windows=tuple(_pair(w) for w in fact["windows"]),
                reintroduce_layers=tuple(int(x) for x in fact["reintroduce_layers"]),
                early=_pair(fact["early"]),
                late_layers=_pair(fact["late_layers"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise PersonagateError(f"the run's recorded layout is incomplete or edited ({exc!r})") from None


def _pair(value: Any) -> tuple[int, int]:
    start, stop = value
    return int(start), int(stop)


def _blocks(text: str, n_layers: int) -> tuple[int, int]:
    blocks = Window.parse(text).resolve(n_layers)
    return blocks.start, blocks.stop


def sliding(first: int, n_layers: int, width: int, stride: int) -> list[tuple[int, int]]:
    """Windows of ``width`` blocks from ``first`` every ``stride`` blocks; the last reaches the final block."""
    width = min(width, n_layers - first)
    if width < 1:
        return []
    starts = list(range(first, n_layers - width + 1, stride))
    if not starts or starts[-1] + width < n_layers:
        starts.append(n_layers - width)
    return [(s, s + width) for s in starts]
