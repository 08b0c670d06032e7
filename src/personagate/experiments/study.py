"""``run_study``: every check that needs no weights, then the run's identity, the model, the runner, the exports."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from personagate._version import __version__
from personagate.experiments.analysis.exports import write_exports
from personagate.experiments.analysis.results import Results
from personagate.experiments.analysis.rules import RULES
from personagate.experiments.design.plan import ModelShape, check_findings_laid_out
from personagate.experiments.design.spec import StudySpec
from personagate.experiments.design.splits import PromptSplits, split_prompts
from personagate.experiments.execution.runner import StudyRunner
from personagate.experiments.protocols import get as get_protocol
from personagate.experiments.protocols import recorded_spec
from personagate.experiments.storage.facts import SECONDS_LAST_SESSION
from personagate.experiments.storage.profile import UnitCost, read_profile
from personagate.experiments.storage.store import RunStore
from personagate.models.loading import check_model_source, load_model, model_layer_count
from personagate.outputs import check_run_dir


def prepare(spec: StudySpec, model: str | None) -> tuple[str, int, PromptSplits]:
    """Every check that needs no weights: the spec, the prompt files, the layer count from the config."""
    model_id = model or spec.model.id
    check_model_source(model_id)
    protocol = get_protocol(spec.protocol)
    splits = split_prompts(spec, protocol.benign_prompts(spec))
    n_layers = model_layer_count(model_id)
    if n_layers is not None:
        spec.check_layers(n_layers)
        shape = ModelShape(n_layers, model_id)
        roles = protocol.plan(spec, shape).roles()  # the plan the stages run, from the config: it fits the model
        check_findings_laid_out(spec, roles, {name: rule.needs for name, rule in RULES.items()})
    return model_id, n_layers or 0, splits


# What must be the same for a run directory to be resumed: everything that decides a result.
IDENTITY_BEFORE_LOAD = ("package_version", "spec", "prompts_sha256")
IDENTITY = (*IDENTITY_BEFORE_LOAD, "model_config_hash", "model_weights")


def prompts_fingerprint(spec: StudySpec) -> str:
    """SHA-256 of the prompt sets' contents (an edited prompt file changes it; its path does not matter)."""
    sets = {key: spec.prompt_set(key) for key in ("harmful", "harmless", "safe")}
    if spec.prompts.test:
        sets["test"] = spec.prompt_set("test")
    return hashlib.sha256(json.dumps(sets, ensure_ascii=False).encode()).hexdigest()[:16]


def run_study(
    spec: StudySpec,
    out: str | Path,
    *,
    model: str | None = None,
    progress: bool = True,
    workers: int = 0,
    ray_address: str | None = None,
    gpus_per_worker: float = 0.0,
) -> Results:
    """Run (or resume) the study in ``out``, write summary.csv, verdicts.csv and completions.jsonl, and
    return the results (computed once from the store; the report takes them).

    Every check that needs no weights runs first (spec, prompts, layer count, the output folder, and,
    for a resumed run, that it is the same study); the weights' fingerprint is checked once loaded.
    With ``workers`` the measurements go to a pool of Ray actors (one model replica each; this
    process keeps the store and makes the directions). The HTML report is the next module's job
    (``personagate.report.write_report(results)``; the CLI does both).
    """
    model_id, _, splits = prepare(spec, model)
    if workers:
        from personagate.experiments.execution.ray_pool import import_ray

        import_ray()  # a missing extra is one line, before anything loads
    out = Path(out)
    check_run_dir(out)
    manifest: dict[str, Any] = {
        "package_version": __version__,
        "spec": spec.to_dict(),
        "prompts_sha256": prompts_fingerprint(spec),
    }
    store: RunStore | None = None
    executor: Any = None
    try:
        if (out / "run.sqlite").exists():  # a resume: refuse a different study before spending a model load
            store = RunStore(out)
            store.lock()
            store.check_identity(manifest, IDENTITY_BEFORE_LOAD)
        started = time.perf_counter()
        chat = load_model(model_id, device=spec.model.device, dtype=spec.model.dtype)
        loaded = time.perf_counter()
        manifest.update(
            {
                "model": chat.name,
                "model_config_hash": chat.config_hash(),
                "model_weights": chat.weights_fingerprint(),
                "model_info": chat.info,
                "spec_source": spec.source,
                "seeds": {
                    "resamples": spec.directions.resamples,
                    "random_controls": spec.windows.random_seeds,
                    "random_controls_side": spec.windows.side_seeds,
                    "generation": "greedy",
                },
                "device": str(chat.device),
                "dtype": str(chat.dtype),
                "torch": torch.__version__,
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        if store is None:
            store = RunStore(out)
            store.lock()
        resumed = store.start(manifest, IDENTITY)
        if resumed and progress:
            print(f"personagate: resuming the run in {store.path}", file=sys.stderr)
        if workers:
            from personagate.experiments.execution.ray_pool import PoolConfig, RayPool

            config = PoolConfig(
                model_id,
                spec.model.device,
                spec.model.dtype,
                workers,
                ray_address,
                gpus_per_worker,
            )
            executor = RayPool(config)
        runner = StudyRunner(spec, chat, store, splits, progress, executor)
        runner.profile.add("model", UnitCost(loaded - started), stage="load")
        get_protocol(spec.protocol).run(runner)
        with runner.profile.stage("analysis"):
            results = Results.of(store, recorded_spec(store.manifest()))
            write_exports(results)
        store.set_fact(SECONDS_LAST_SESSION, time.perf_counter() - started)
        results = dataclasses.replace(results, profile=read_profile(store))  # with the analysis's own time
    finally:
        if executor is not None:
            executor.close()
        if store is not None:
            store.close()
    return results
