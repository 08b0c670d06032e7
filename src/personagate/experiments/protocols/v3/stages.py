"""The stages of a study, in order, each measured into the run store before the next reads it:
directions, the persona dose (validation), the reintroduction doses (calibration, harmless
validation prompts), the window controls (energy under the chosen dose, validation prompts), the
mediation target (validation prompts), the test conditions, then each resample of the directions.
Every choice is made on validation prompts; the test prompts are only ever measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from personagate.activations import second_moments
from personagate.directions import Direction
from personagate.experiments.analysis.calibration import Calibration, calibrate
from personagate.experiments.analysis.measurements import Measurements
from personagate.experiments.design.conditions import Condition
from personagate.experiments.design.framing import DEFAULT_FRAMING
from personagate.experiments.design.layout import Layout
from personagate.experiments.design.names import HARMFUL_VAL, Group, Role
from personagate.experiments.design.plan import ArmPlan, ArmValues, Doses, ModelShape
from personagate.experiments.execution.runner import StudyRunner
from personagate.experiments.protocols.base import Protocol
from personagate.experiments.protocols.v3 import sweeps
from personagate.experiments.protocols.v3.multiturn_stages import check_multiturn_fits, run_multiturn
from personagate.experiments.protocols.v3.vectors import VectorMaker
from personagate.experiments.storage.facts import (
    CALIBRATION,
    COS_PERSONA_REFUSAL,
    LAYOUT,
    PERSONA_COEFF,
    PERSONA_COEFF_RULE,
    RESAMPLE_SEEDS,
    STOPPED,
)
from personagate.interventions import Program, steer


def run_stages(protocol: Protocol, runner: StudyRunner) -> None:
    spec, store, n_layers, profile = runner.spec, runner.store, runner.n_layers, runner.profile
    shape = ModelShape(n_layers, runner.chat.name)
    layout = Layout.of(spec, n_layers)
    seeds = spec.directions.resamples
    with profile.stage("directions"):
        store.set_fact(LAYOUT, layout.to_fact())
        check_multiturn_fits(runner)
        runner.learn_refusal_tokens()
        assert runner.refusal_tokens is not None
        maker = VectorMaker(spec, runner.chat, store, runner.splits, runner.refusal_tokens, runner.progress)
        with profile.timed("directions"):
            runner.directions[0] = maker.make(seeds[0], layout.injection)

    with profile.stage("validation"):
        validation = protocol.plan(spec, shape).stage("validation")
        runner.measure(validation, "validation")
        coeff = choose_coefficient(runner, [c for c in validation if c.group == Group.PERSONA_SWEEP])
    if coeff is None:  # nothing to test: every arm would rest on an incoherent persona
        store.set_fact(RESAMPLE_SEEDS, list(seeds))
        return

    if spec.multiturn.enabled and spec.multiturn.only:  # the multi-turn family alone
        plan = protocol.plan(spec, shape, ArmValues(coeff, (0.0,) * n_layers))
        with profile.stage("multi-turn"):
            run_multiturn(runner, layout, plan.stage("multi-turn"))
        store.set_fact(RESAMPLE_SEEDS, [seeds[0]])
        return
    with profile.stage("calibration"):
        doses = reintroduction_doses(runner, protocol.plan(spec, shape), layout)
    with profile.stage("window controls"):
        if spec.windows.random == "energy":
            with profile.timed("stream energy"):
                runner.directions[0].update(window_controls(runner, maker, layout, coeff, 0, seeds[0]))
        baseline_val = next(c for c in validation if c.group == Group.BASELINE)
        runner.readout([baseline_val])
        target = torch.tensor(store.readout()[baseline_val.name]).mean(dim=1).tolist()  # [layer], validation
    plan = protocol.plan(spec, shape, ArmValues(coeff, tuple(target), doses))
    with profile.stage("test"):
        conditions = plan.stage("test")
        runner.measure(conditions, "test")
        headline = (Role.PERSONA, Role.NATURAL, Role.PERSONA_LATE_WINDOW)
        runner.readout([c for c in conditions if c.role in headline and c.mode == spec.generation.main])
    if spec.multiturn.enabled:
        with profile.stage("multi-turn"):
            run_multiturn(runner, layout, plan.stage("multi-turn"))

    for index, seed in enumerate(seeds[1:], start=1):
        with profile.stage(f"resample {seed}"):
            with profile.timed("directions"):
                runner.directions[index] = maker.make(seed, layout.injection)
            if spec.windows.random == "energy":
                with profile.timed("stream energy"):
                    runner.directions[index].update(window_controls(runner, maker, layout, coeff, index, seed))
            runner.measure(plan.stage(f"resample {seed}"), f"resample {seed}")

    persona, refusal = runner.directions[0]["persona"], runner.directions[0]["refusal"]
    store.set_fact(COS_PERSONA_REFUSAL, persona.cosine(refusal, n_layers).tolist())
    store.set_fact(RESAMPLE_SEEDS, list(seeds))


def choose_coefficient(runner: StudyRunner, sweep: Sequence[Condition]) -> float | None:
    """On the validation prompts: the strongest suppression among coherent coefficients (guard within
    its limit, few incoherent replies); ties go to the smaller coefficient. None (and a fact the
    report opens with) when no coefficient is coherent."""
    measured = Measurements.of(runner.store)
    limit, max_incoherent = runner.spec.scoring.max_nll_delta, runner.spec.verdicts.max_incoherent
    coherent = [
        c
        for c in sweep
        if measured.guard.get(c.name, 0.0) <= limit and measured.rates[c.name].incoherent_rate <= max_incoherent
    ]
    if not coherent:
        tried = ", ".join(f"x{c.axis:g} (NLL +{measured.guard.get(c.name, float('nan')):.2f})" for c in sweep)
        runner.store.set_fact(STOPPED, f"no persona coefficient was coherent on validation: {tried}")
        return None
    best = min(coherent, key=lambda c: (measured.rates[c.name].refusal_rate, float(c.axis or 0)))
    runner.store.set_fact(PERSONA_COEFF, best.axis)
    runner.store.set_fact(PERSONA_COEFF_RULE, "strongest coherent suppression on validation")
    return float(best.axis or 0)


def reintroduction_doses(runner: StudyRunner, plan: ArmPlan, layout: Layout) -> Doses:
    """The reintroduction doses: calibrated on harmless validation prompts, or the spec's coefficients."""
    spec = runner.spec
    if spec.reintroduce.dose != "calibrated":
        return sweeps.fixed_doses(layout, spec.reintroduce.coeffs)
    runner.measure(plan.stage("calibration"), "calibration")
    known = runner.store.fact(CALIBRATION)
    calibration = (
        Calibration.from_fact(known)
        if known
        else calibrate(Measurements.of(runner.store), spec.reintroduce.coeffs, spec.scoring.max_nll_delta)
    )
    runner.store.set_fact(CALIBRATION, calibration.to_fact())
    return calibration.doses


def window_controls(
    runner: StudyRunner, maker: VectorMaker, layout: Layout, coeff: float, index: int, seed: int
) -> dict[str, Direction]:
    """Random window directions matched on the energy the persona direction carries in the steered
    stream, at every window layer, on the validation prompts."""
    layers = sorted({layer for start, stop in layout.windows for layer in range(start, stop)})
    steered = Program([sweeps.persona_op(runner.spec, coeff, layout.injection)]).bind(runner.directions[index])
    with steer(runner.chat, steered):
        moments = second_moments(
            runner.chat,
            runner.ids(HARMFUL_VAL, DEFAULT_FRAMING),
            layers,
            batch_size=runner.batch,
            progress=runner.progress,
            desc=f"stream energy r{seed}",
        )
    return maker.window_controls(seed, runner.directions[index]["persona"], moments)
