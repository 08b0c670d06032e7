"""The report's plots, each with a file stem that says what it shows, and the mediation shares the
mediation plot draws."""

from __future__ import annotations

import math

from personagate.experiments.analysis.results import Results
from personagate.experiments.design.names import Group, Role
from personagate.report import plots
from personagate.report.multiturn_plots import multiturn_figures
from personagate.report.profile import profile_figure
from personagate.stats import share_restored

Named = tuple[str, plots.Figure]


def mediation_shares(results: Results) -> list[tuple[float, float, float, float]]:
    """Per mediation window: the share of the persona effect (in the sweep mode) that the clamp undoes,
    as (window start, share, ci_low, ci_high)."""
    rows = results.of_group(Group.MEDIATION)
    if not rows:
        return []
    mode = rows[0].condition.mode
    steered, base = results.find(Role.PERSONA, mode), results.find(Role.BASELINE, mode)
    if steered is None or base is None:
        return []
    outcomes = results.measurements.outcomes
    s_out, b_out = outcomes[steered.name], outcomes[base.name]
    out = []
    for r in sorted(rows, key=lambda r: float(r.condition.axis or 0)):
        t_out = outcomes[r.name]
        shared = sorted(set(t_out) & set(s_out) & set(b_out))
        if shared:
            share = share_restored(
                [t_out[i] for i in shared], [s_out[i] for i in shared], [b_out[i] for i in shared], n_boot=2000
            )
            if not math.isnan(share[0]):
                out.append((float(r.condition.axis or 0), *share))
    return out


def named_figures(results: Results) -> list[Named]:
    """The report's plots (caption, PNG bytes), each with a file stem."""
    made = [
        ("persona_coefficient", plots.persona_sweep(results)),
        ("reintroduction", plots.reintroduction(results)),
        ("windows", plots.windows(results)),
        ("mediation", plots.mediation(mediation_shares(results))),
        ("readout", plots.readout(results.readout)),
        ("cosine", plots.cosine(results.facts.cos_persona_refusal)),
        ("geometry", plots.geometry(results.facts.geometry)),
        *multiturn_figures(results),
        ("time_profile", profile_figure(results.profile)),
    ]
    return [(stem, figure) for stem, figure in made if figure is not None]
