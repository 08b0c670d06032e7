"""Where a run's time goes: seconds, prompt tokens, decoded tokens and rows per stage and kind of work,
summed over every session on the store (a resumed run adds to what the first session recorded).

Kinds are the work units' (``generate``, ``screen``, ``first_token``, ``guard``), plus the named work
between units (``directions``, ``refusal tokens``, ``readout``, ...) and ``other`` for the rest of a
stage's wall time, so that a stage's rows add up to its wall time. The profile is saved to the run
store after every stage and every measured batch of units, so an interrupted run keeps it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

from personagate.experiments.storage.facts import PROFILE
from personagate.experiments.storage.store import RunStore


@dataclass(frozen=True)
class UnitCost:
    """What computing one unit took: seconds, prompt tokens (every row's prompt), tokens decoded, rows."""

    seconds: float
    prompt_tokens: int = 0
    decoded_tokens: int = 0
    rows: int = 0


@dataclass(frozen=True)
class ProfileEntry:
    stage: str
    kind: str
    seconds: float = 0.0
    prompt_tokens: int = 0
    decoded_tokens: int = 0
    rows: int = 0
    units: int = 0

    def plus(self, cost: UnitCost, units: int) -> ProfileEntry:
        return replace(
            self,
            seconds=self.seconds + cost.seconds,
            prompt_tokens=self.prompt_tokens + cost.prompt_tokens,
            decoded_tokens=self.decoded_tokens + cost.decoded_tokens,
            rows=self.rows + cost.rows,
            units=self.units + units,
        )

    @property
    def decoded_per_second(self) -> float:
        return self.decoded_tokens / self.seconds if self.seconds > 0 else 0.0


def read_profile(store: RunStore) -> tuple[ProfileEntry, ...]:
    """The profile recorded in ``store`` (empty for a store written before profiles existed)."""
    return tuple(ProfileEntry(**entry) for entry in store.fact(PROFILE) or [])


class TimeProfile:
    """The running profile of one session, added to what the store already holds."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.entries: dict[tuple[str, str], ProfileEntry] = {(e.stage, e.kind): e for e in read_profile(store)}
        self.current = "setup"
        self._attributed = 0.0  # seconds of the current stage already given to a kind

    def add(self, kind: str, cost: UnitCost, units: int = 0, stage: str | None = None) -> None:
        """Add ``cost`` to ``kind`` in the current stage (or in ``stage``, for work done before it)."""
        key = (stage or self.current, kind)
        self.entries[key] = self.entries.get(key, ProfileEntry(*key)).plus(cost, units)
        self._attributed += cost.seconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Work inside is attributed to stage ``name``; its unattributed wall time becomes ``other``."""
        outer, outer_attributed = self.current, self._attributed
        self.current, self._attributed = name, 0.0
        started = time.perf_counter()
        try:
            yield
        finally:
            rest = time.perf_counter() - started - self._attributed
            if rest > 0:
                self.add("other", UnitCost(rest))
            self.current, self._attributed = outer, outer_attributed + time.perf_counter() - started
            self.save()

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        """Named work between units (directions, readout) in the current stage."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(kind, UnitCost(time.perf_counter() - started))

    def save(self) -> None:
        self.store.set_fact(PROFILE, [asdict(e) for e in self.entries.values()])
