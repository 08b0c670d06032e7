"""A Ray actor pool computing work units: one actor per model replica, each loading the model once.

The driver keeps the run store and is its only writer; actors only compute. Directions travel as
safetensors bytes (put in Ray's object store once per set), never as pickled tensors or objects of
ours. A unit whose actor dies (killed, out of memory) or fails is sent again to another actor, up to
``retries`` times, then the run stops with a one-line error naming the unit; Ray restarts a dead
actor, which loads the model again.

Ray is an optional extra (``pip install 'personagate[ray]'``) and is imported only here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.experiments.execution.units import Computed, Settings, Unit, compute
from personagate.prefill import PrefixCache

# A failed actor is probed until it answers (Ray restarts it and it loads the model again).
PROBES, PROBE_WAIT = 120, 1.0


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PersonagateError("--workers needs Ray: pip install 'personagate[ray]'") from None
    return ray


@dataclass(frozen=True)
class PoolConfig:
    model: str
    device: str = "auto"
    dtype: str = "auto"
    workers: int = 2
    address: str | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    retries: int = 2
    max_restarts: int = 2


class Worker:
    """The actor: a loaded model and the directions it was last sent."""

    def __init__(self, model: str, device: str, dtype: str) -> None:
        import os

        from personagate.models.loading import load_model

        self.pid = os.getpid()
        self.chat = load_model(model, device=device, dtype=dtype)
        self.key: str | None = None
        self.directions: dict[int, dict[str, Direction]] = {}
        self.prefix_cache = PrefixCache()  # conversation histories, reused from unit to unit on this worker

    def process_id(self) -> int:
        return self.pid

    def compute(self, unit: Unit, settings: Settings, key: str, directions: dict[int, dict[str, bytes]]) -> Computed:
        if key != self.key:  # a new set of directions: decode it once
            self.directions = {r: {k: Direction.from_bytes(v) for k, v in d.items()} for r, d in directions.items()}
            self.key = key
        return compute(self.chat, self.directions, unit, settings, self.prefix_cache)


class RayPool:
    """The executor behind ``--workers N``."""

    def __init__(self, config: PoolConfig) -> None:
        ray = import_ray()
        self.ray, self.config = ray, config
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": config.address} if config.address else {}
            ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False, **kwargs)
        remote = ray.remote(
            num_cpus=config.cpus_per_worker, num_gpus=config.gpus_per_worker, max_restarts=config.max_restarts
        )(Worker)
        self.actors = [remote.remote(config.model, config.device, config.dtype) for _ in range(config.workers)]
        self._shipped: tuple[str, Any] | None = None

    def pids(self) -> list[int]:
        return list(self.ray.get([a.process_id.remote() for a in self.actors]))

    def _ship(self, directions: dict[int, dict[str, Direction]]) -> tuple[str, Any]:
        """The directions as safetensors bytes in Ray's object store, once per distinct set."""
        payload = {r: {k: d.to_bytes() for k, d in sorted(ds.items())} for r, ds in directions.items()}
        digest = hashlib.sha256()
        for r in sorted(payload):
            for k, data in payload[r].items():
                digest.update(f"{r}/{k}".encode())
                digest.update(data)
        key = digest.hexdigest()
        if self._shipped is None or self._shipped[0] != key:
            self._shipped = (key, self.ray.put(payload))
        return self._shipped

    def run(
        self, units: Sequence[Unit], directions: dict[int, dict[str, Direction]], settings: Settings
    ) -> Iterator[tuple[Unit, Computed]]:
        """Each actor holds one unit at a time; a finished unit is yielded at once and its actor takes the
        next. An actor whose unit failed is probed until it answers again (Ray restarts a dead actor)
        before it gets more work; the unit goes to another actor first."""
        ray = self.ray
        errors = (ray.exceptions.RayActorError, ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError)
        key, payload = self._ship(directions)
        queue = list(units)
        attempts: dict[int, int] = {}
        running: dict[Any, tuple[int | None, int]] = {}  # ref -> (unit index, or None for a probe; actor)
        avoid: dict[int, set[int]] = {}  # unit index -> actors it failed on
        probes: dict[int, int] = {}  # actor -> probes that failed in a row
        idle = list(range(len(self.actors)))
        pending = list(range(len(queue)))
        while pending or any(index is not None for index, _ in running.values()):
            while pending and idle:
                index = next((i for i in pending if set(idle) - avoid.get(i, set())), pending[0])
                choice = next((a for a in idle if a not in avoid.get(index, set())), idle[0])
                idle.remove(choice)
                pending.remove(index)
                running[self.actors[choice].compute.remote(queue[index], settings, key, payload)] = (index, choice)
            done, _ = ray.wait(list(running), num_returns=1)
            ref = done[0]
            index, actor = running.pop(ref)
            try:
                result = ray.get(ref)
            except errors as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, PersonagateError):  # the user's input: a retry would fail the same way
                    raise PersonagateError(str(cause)) from None
                self._probe(actor, running, probes)
                if index is None:
                    continue
                attempts[index] = attempts.get(index, 0) + 1
                avoid.setdefault(index, set()).add(actor)
                if attempts[index] > self.config.retries:
                    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                    raise PersonagateError(
                        f"work unit '{queue[index].label}' failed {attempts[index]} times ({reason}); "
                        "re-run the same command to resume"
                    ) from None
                pending.insert(0, index)
                continue
            probes.pop(actor, None)
            idle.append(actor)
            if index is not None:
                yield queue[index], result

    def _probe(self, actor: int, running: dict[Any, tuple[int | None, int]], probes: dict[int, int]) -> None:
        """Ask a failed actor for its process id; it gets work again once it answers."""
        probes[actor] = probes.get(actor, 0) + 1
        if probes[actor] > PROBES:
            raise PersonagateError(
                f"a Ray worker has not come back after {PROBES} tries; re-run the same command to resume"
            )
        if probes[actor] > 1:
            time.sleep(PROBE_WAIT)
        running[self.actors[actor].process_id.remote()] = (None, actor)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
