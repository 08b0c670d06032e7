"""Protocol paper: their arms, as their code runs them, equal ours.

Their code edits a block's output with a forward hook on ``model.model.layers[k]`` (``h.add_(a * v)``,
then ``h.sub_((h . u) u)`` for a knockout); ours edits ``resid_pre[k + 1]``. The tests write their hooks
by hand on a tiny model and compare the logits with our programs, arm by arm.
"""

from __future__ import annotations

import pytest
import torch

from personagate import Add, Direction, Program, steer
from personagate.experiments.protocols import load_spec
from personagate.experiments.protocols.paper.arms import PaperBlocks, paper_conditions
from personagate.interventions import Project

from tiny import tiny_model

IDS = torch.tensor([[5, 17, 99, 43, 201, 3, 77, 12], [8, 8, 40, 41, 42, 43, 44, 45]])


def their_hooks(model, adds: list[tuple[int, torch.Tensor]], knockouts: list[tuple[int, torch.Tensor]]):
    """Their registration, in their order: every steering hook, then every knockout hook."""

    def steering(vector):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            h.add_(vector)
            return output

        return hook

    def knockout(unit):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            proj = torch.einsum("bsd,d->bs", h, unit).unsqueeze(-1)
            h.sub_(proj * unit)
            return output

        return hook

    layers = model.model.layers
    handles = [layers[k].register_forward_hook(steering(v)) for k, v in adds]
    handles += [layers[k].register_forward_hook(knockout(u)) for k, u in knockouts]
    return handles


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize(
    "arm",
    ["mp_only", "mp_early_refusal", "mp_late_refusal_L2", "mp_only_ko_L2", "mp_only_ko_L1", "mp_early_ref_ko_L2"],
)
def test_each_arm_equals_their_hand_written_hooks(family, arm):
    chat = tiny_model(family)
    g = torch.Generator().manual_seed(7)
    d = chat.hidden_size
    persona = torch.randn(d, generator=g)
    unit = persona / persona.norm()
    refusal = torch.randn(d, generator=g)
    mp = Direction(unit * 2.5, name="paper-persona")
    ref = Direction(refusal / refusal.norm() * 2.5, name="paper-refusal")
    u = Direction(unit, name="paper-unit")
    inject, early = 1, 0  # their block numbers on a 4-block model
    theirs = {
        "mp_only": ([(inject, 3.0 * mp.vectors)], []),
        "mp_early_refusal": ([(inject, 3.0 * mp.vectors), (early, 2.0 * ref.vectors)], []),
        "mp_late_refusal_L2": ([(inject, 3.0 * mp.vectors), (2, 2.0 * ref.vectors)], []),
        "mp_only_ko_L2": ([(inject, 3.0 * mp.vectors)], [(2, unit)]),
        "mp_only_ko_L1": ([(inject, 3.0 * mp.vectors)], [(1, unit)]),  # the same block: cancels the injection
        "mp_early_ref_ko_L2": ([(inject, 3.0 * mp.vectors), (early, 2.0 * ref.vectors)], [(2, unit)]),
    }[arm]
    ours = {
        "mp_only": [Add(mp, 3.0, inject + 1)],
        "mp_early_refusal": [Add(mp, 3.0, inject + 1), Add(ref, 2.0, early + 1)],
        "mp_late_refusal_L2": [Add(mp, 3.0, inject + 1), Add(ref, 2.0, 3)],
        "mp_only_ko_L2": [Add(mp, 3.0, inject + 1), Project(u, 3)],
        "mp_only_ko_L1": [Add(mp, 3.0, inject + 1), Project(u, 2)],
        "mp_early_ref_ko_L2": [Add(mp, 3.0, inject + 1), Add(ref, 2.0, early + 1), Project(u, 3)],
    }[arm]
    with torch.inference_mode():
        handles = their_hooks(chat.model, *theirs)
        try:
            expected = chat.model(input_ids=IDS).logits
        finally:
            for handle in handles:
                handle.remove()
        with steer(chat, Program(ours)):
            got = chat.model(input_ids=IDS).logits
        base = chat.model(input_ids=IDS).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if arm != "mp_only_ko_L1":
        assert not torch.allclose(got, base, atol=1e-3)  # the arm does something
    else:  # the knockout at the injection block removes the injection (and the natural component)
        projected = Program([Project(u, inject + 1)])
        with torch.inference_mode(), steer(chat, projected):
            torch.testing.assert_close(got, chat.model(input_ids=IDS).logits, rtol=1e-5, atol=1e-5)


def test_their_blocks_on_their_models_and_by_depth_elsewhere():
    spec = load_spec(protocol="paper")
    qwen = PaperBlocks.of(spec, 28, "Qwen/Qwen2.5-7B-Instruct")
    llama = PaperBlocks.of(spec, 32, "meta-llama/Llama-3.1-8B-Instruct")
    assert qwen.exact and llama.exact and qwen.knockouts == llama.knockouts == (18, 20, 22, 24)
    assert (qwen.inject, qwen.refusal_row, qwen.late_refusal) == (20, 14, (22, 24))
    assert PaperBlocks.site(20) == 21  # block 20's output is the stream entering block 21
    small = PaperBlocks.of(spec, 24, "default")
    assert not small.exact and small.inject == round(20 * 24 / 28) and small.late_knockout == round(22 * 24 / 28)
    layout = small.layout()
    site = small.site(small.late_knockout)
    assert layout.early == (0, small.site(small.inject)) and layout.late == (site, site + 1)


def test_the_paper_arms_are_theirs_and_ours_beside_them():
    spec = load_spec(protocol="paper")
    blocks = PaperBlocks.of(spec, 28, "Qwen/Qwen2.5-7B-Instruct")
    arms = paper_conditions(spec, blocks, null_seeds=20)
    names = [c.name for c in arms]
    assert len(names) == len(set(names))
    tested = [c for c in arms if c.prompts == "harmful" and c.mode == "generate"]
    assert len(tested) == 12  # their 11 arms (their random knockout included) and the unsteered knockout (ours)
    assert sum(c.role == "random_late_window" for c in arms) == 20
    benign = [c for c in arms if c.prompts == "benign"]
    assert len(benign) == 6  # their coherence check's six arms
    persona = next(c for c in arms if c.name == "persona (mp_only)")
    op = persona.ops.ops[0]
    assert op.direction == "paper-persona" and op.coeff == 3.0 and op.layers == 21
    assert spec.generation.max_new_tokens == 150 and spec.prompts.n_test == 313
    assert spec.prompts.system == "You are a helpful assistant."


def test_the_paper_protocol_runs_end_to_end_on_a_tiny_model(tmp_path, capsys, monkeypatch):
    """Every stage: the persona data generated and filtered, the vectors, the arms, the verdicts, the report.
    A random-weight model never writes a refusal phrase, so the persona filter's detector is replaced by
    one that calls every other reply a refusal (the filter itself, and everything after it, run as they are)."""
    from personagate.cli import main
    from personagate.experiments.protocols.paper import vectors as paper_vectors

    calls = iter(range(10**6))
    monkeypatch.setattr(paper_vectors, "is_refusal", lambda text: next(calls) % 2 == 0)

    chat = tiny_model("qwen2", layers=8)
    chat.model.save_pretrained(tmp_path / "model")
    chat.tokenizer.save_pretrained(tmp_path / "model")
    spec = tmp_path / "paper.toml"
    spec.write_text(f"""protocol = "paper"
[model]
id = "{tmp_path / "model"}"
[prompts]
n_val = 4
n_test = 5
n_train = 4
n_safe = 2
n_neutral = 2
[directions]
refusal_tokens = ["I", "S"]
[generation]
max_new_tokens = 6
batch_size = 4
[verdicts]
max_incoherent = 1.0
[scoring]
max_nll_delta = 10.0
min_loglik = -100.0
max_repetition = 1.0
max_nonlanguage = 1.0
[windows]
random_seeds = 2
[paper]
reference_blocks = 8
inject_block = 4
refusal_block = 2
late_refusal = [5, 6]
knockout_blocks = [3, 4, 5, 6]
late_knockout = 5
questions = 2
response_tokens = 4
benign = 3
""")
    out = tmp_path / "run"
    assert main(["run", str(spec), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "persona_suppresses" in printed and "wrote" in printed
    import csv

    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = {r["condition"] for r in rows}
    assert "persona (mp_only)" in names and "persona - their random direction @ block 5 (mp_random_ko)" in names
    assert all(r["paper_regex_rate"] != "" for r in rows if r["mode"] == "generate" and r["n"] != "0")
    assert sum(r["prompts"] == "benign" for r in rows) == 6  # their coherence check's six arms
    vectors = {p.stem for p in (out / "vectors" / "r0").glob("*.safetensors")}
    assert {"paper-model_persona-prompt_end", "paper-i_thou-response_avg", "paper-refusal-layers"} <= vectors
    with open(out / "verdicts.csv", newline="") as f:
        verdicts = {v["finding"]: v for v in csv.DictReader(f) if v["scope"] == "main"}
    assert "persona_specific" not in verdicts  # their design has no style personas to test it with
    page = (out / "report.html").read_text()
    assert page.count("<img") >= 3 and "The paper's refusal rule" in page
