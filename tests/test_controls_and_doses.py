"""The pieces protocol v3 adds: energy-matched random directions, second moments of the stream, the
held-out split of the compliant personas, and the calibration of reintroduction doses."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from personagate import Direction, PersonagateError
from personagate.activations import second_moments
from personagate.directions import energy_matched_direction
from personagate.experiments.analysis.calibration import calibrate
from personagate.experiments.analysis.measurements import Measurements
from personagate.experiments.design.names import HARMLESS_VAL, Role
from personagate.experiments.design.splits import persona_split
from personagate.experiments.storage.records import EMPTY_PROGRAM, Row

from laid_out import LaidOut, record


def moments(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    spectrum = torch.logspace(2, -2, d, dtype=torch.float64)  # a few directions carry most of the energy
    return basis @ torch.diag(spectrum) @ basis.T


@pytest.mark.parametrize("which", ["high", "low"])
def test_energy_matched_directions_carry_the_energy_they_stand_in_for(which):
    d, layers = 32, 4
    m = {layer: moments(d, layer) for layer in (1, 2)}
    persona = torch.zeros(layers, d, dtype=torch.float64)
    for layer in range(layers):
        _, vectors = torch.linalg.eigh(m.get(layer, moments(d, 9)))
        persona[layer] = vectors[:, -1 if which == "high" else 0] * 3 + vectors[:, d // 2]  # far from random
    like = Direction(persona.float(), name="persona")
    control = energy_matched_direction(like, m, seed=5)
    for layer in (1, 2):
        u = control.at(layer).double() / control.at(layer).double().norm()
        p = like.at(layer).double() / like.at(layer).double().norm()
        assert float(u @ m[layer] @ u) == pytest.approx(float(p @ m[layer] @ p), rel=1e-3)
        assert abs(float(u @ p)) < 0.9  # matched in energy, not a copy of the direction
    torch.testing.assert_close(control.norms(), like.norms())  # each layer at the norm it stands in for
    again = energy_matched_direction(like, m, seed=5)
    assert torch.equal(again.vectors, control.vectors)  # seeded
    assert not torch.equal(energy_matched_direction(like, m, seed=6).vectors, control.vectors)


def test_second_moments_equal_the_stream_they_summarise(chat):
    from personagate.activations import mean_activations

    ids = [[1, 2, 3, 4], [5, 6, 7]]
    m = second_moments(chat, ids, [0, 1], batch_size=2, progress=False)
    first = second_moments(chat, ids[:1], [1], batch_size=1, progress=False)[1]
    second = second_moments(chat, ids[1:], [1], batch_size=1, progress=False)[1]
    # a mean over the 7 real tokens, padding left out (batching moves float32 activations by rounding only)
    torch.testing.assert_close(m[1], (4 * first + 3 * second) / 7, rtol=1e-4, atol=1e-5)
    mean = mean_activations(chat, ids, positions="spans", spans=[(0, 4), (0, 3)], batch_size=2, progress=False)
    trace_mean = torch.trace(m[1]).item()
    assert trace_mean >= float(mean.mean[1].double().norm() ** 2) - 1e-6  # E|h|^2 >= |E h|^2


def test_the_natural_arm_never_sees_the_personas_the_direction_was_built_from():
    compliant = [f"persona {i}" for i in range(10)]
    built, held = persona_split(compliant, 4, resample=0)
    assert len(built) == 6 and len(held) == 4 and not set(built) & set(held)
    assert persona_split(compliant, 4, resample=1) != (built, held)  # resamples vary the persona prompts
    assert persona_split(compliant, 0, resample=0) == (compliant, compliant)
    with pytest.raises(PersonagateError, match="natural_holdout"):
        persona_split(compliant, 10, resample=0)


def test_calibration_finds_equal_effect_doses_up_to_the_coherence_limit(tmp_path):
    layout = LaidOut()
    store = layout.store(tmp_path)
    curves = {1: [0.0, 0.1, 0.4, 1.0], 17: [0.2, 0.6, 0.9, 1.0]}  # induced refusal on 10 harmless prompts
    guards = {1: [0.0, 0.1, 0.2, 0.9], 17: [0.0, 0.0, 0.1, 0.2]}
    position = 0
    for layer, rates in curves.items():
        for fraction, rate, guard in zip((0.1, 0.2, 0.4, 0.8), rates, guards[layer], strict=True):
            name = f"+ refusal @ {layer} x{fraction}"
            store.add_condition(
                record(
                    name,
                    Role.CALIBRATION,
                    "first_token",
                    prompts=HARMLESS_VAL,
                    axis=float(layer),
                    dose=fraction,
                    position=position,
                )
            )
            position += 1
            store.write_rows(Row(name, HARMLESS_VAL, i, refusal=int(i < rate * 10), score=1.0) for i in range(10))
            store.write_rows([Row(name, "neutral", 0, loglik=-1.0 - guard)])
    unsteered = record("no intervention", Role.CALIBRATION, "first_token", prompts=HARMLESS_VAL, dose=0.0)
    store.add_condition(dataclasses.replace(unsteered, identity=EMPTY_PROGRAM, position=position))  # the guard's zero
    store.write_rows([Row("no intervention", "neutral", 0, loglik=-1.0)])
    found = calibrate(Measurements.of(store), [0.25, 0.5, 0.9], max_nll_delta=0.5)
    store.close()
    assert [t for t, _ in found.doses[17]] == [0.25, 0.5, 0.9]
    # layer 17 reaches 0.5 between x0.1 (0.2) and x0.2 (0.6): log-interpolated
    assert 0.1 < dict(found.doses[17])[0.5] < 0.2
    # layer 1 reaches 0.25 by x0.4; 0.5 and 0.9 lie past x0.4, where the next grid point fails the guard
    assert [t for t, _ in found.doses[1]] == [0.25] and all("incoherent" in m for m in found.missing[1])
