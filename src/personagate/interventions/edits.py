"""The two primitive edits every op compiles to, and the sites they act on.

- ``add``: ``h <- h + v``;
- ``clamp``: ``h <- h + (value - h . u) u`` for a unit vector ``u``: the component along ``u`` set
  to ``value`` (``value = 0`` projects ``u`` out).

Sites: ``("resid_pre", l)`` is the residual stream entering block ``l``; ``("attn_out", l)`` and
``("mlp_out", l)`` are what block ``l`` adds to the stream from attention and from the MLP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

Scope = Literal["all", "prompt", "generated", "last", "probe", "assistant"]
# last: the last prompt position only; probe: a conversation's last user turn, assistant: its assistant
# turns (both with every generated token, the reply being an assistant turn after the probe)
SCOPES: tuple[Scope, ...] = ("all", "prompt", "generated", "last", "probe", "assistant")
CONVERSATION_SCOPES: tuple[Scope, ...] = ("probe", "assistant")
SiteKind = Literal["resid_pre", "attn_out", "mlp_out"]
Site = tuple[SiteKind, int]
EditKind = Literal["add", "clamp"]


@dataclass
class SiteEdit:
    """One op's edit at one site."""

    kind: EditKind
    vector: torch.Tensor
    scope: Scope
    value: float = 0.0  # the clamp's target projection (0: project out)
    _cast: dict[torch.dtype, torch.Tensor] = field(default_factory=dict, repr=False)

    def to(self, device: torch.device) -> SiteEdit:
        return SiteEdit(self.kind, self.vector.to(device), self.scope, self.value)

    def cast(self, dtype: torch.dtype) -> torch.Tensor:
        """The vector in the residual stream's dtype, converted once rather than on every call."""
        if dtype not in self._cast:
            self._cast[dtype] = self.vector.to(dtype)
        return self._cast[dtype]

    def key(self) -> tuple:
        """What makes two edits the same edit (for sharing work between programs)."""
        return (self.kind, self.scope, self.value, self.vector.detach().cpu().numpy().tobytes())


def boundary(site: Site) -> int:
    """The residual-stream boundary an edit first changes: ``resid_pre[l]`` is boundary ``l``; what
    block ``l`` writes from attention or the MLP reaches the stream at boundary ``l + 1``."""
    kind, layer = site
    return layer if kind == "resid_pre" else layer + 1
