"""Who computes the work units: this process (the default), or a pool of Ray actors (``--workers``).

An executor takes units and yields ``(unit, computed)`` (rows and cost) as each finishes; the driver
writes the rows.
The in-process executor is a loop; the Ray one lives in ``personagate.experiments.execution.ray_pool`` and is
imported only when asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from personagate.directions import Direction
from personagate.experiments.execution.units import Computed, Settings, Unit, compute
from personagate.models.loading import ChatModel
from personagate.prefill import PrefixCache


class Executor(Protocol):
    def run(
        self, units: Sequence[Unit], directions: dict[int, dict[str, Direction]], settings: Settings
    ) -> Iterator[tuple[Unit, Computed]]: ...

    def close(self) -> None: ...


class InProcess:
    """Computes every unit here, in order, with the driver's model."""

    def __init__(self, chat: ChatModel) -> None:
        self.chat = chat
        self.prefix_cache = PrefixCache()  # conversation histories, reused from unit to unit

    def run(
        self, units: Sequence[Unit], directions: dict[int, dict[str, Direction]], settings: Settings
    ) -> Iterator[tuple[Unit, Computed]]:
        for unit in units:
            yield unit, compute(self.chat, directions, unit, settings, self.prefix_cache)

    def close(self) -> None:
        self.prefix_cache.clear()
