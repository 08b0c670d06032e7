"""Names shared by the protocol, the runner, the results, the verdicts and the report (no torch behind them)."""

from __future__ import annotations

from typing import Literal

# generate: the reply, labelled three ways; screen: its first few tokens, refuse or not by the
# detector (validated against generate: benchmarks/RESULTS.md); first_token: the refusal-token score.
Mode = Literal["generate", "screen", "first_token"]
MODES: tuple[Mode, ...] = ("generate", "screen", "first_token")

# Condition groups: the arms of the protocol (a plot or a table section each).
BASELINE = "baseline"
REFUSAL_ABLATED = "refusal_ablated"
PERSONA_SWEEP = "persona_sweep"  # the coefficient sweep, on the validation prompts
PERSONA = "persona"  # persona steering at the chosen coefficient
SANITY = "sanity"  # the injected vector removed again at the injection site: must equal baseline
STYLE = "style"  # non-compliant personas injected at the same norm (specificity of finding 1)
RANDOM_ADD = "random_add"  # random vectors added at the persona vector's norm
NATURAL = "natural"  # the compliant system prompts themselves, no vector
REFERENCE = "reference"  # a headline condition measured the way the sweeps are
REINTRODUCE = "reintroduce"  # refusal direction added back: layer x dose
REINTRODUCE_WINDOW = "reintroduce_window"  # protocol v1: early vs late window
PERSONA_WINDOW = "persona_window"  # persona steering, persona projected out of a window
PROJECTION_ONLY = "projection_only"  # the same projection on the unsteered model
NATURAL_WINDOW = "natural_window"  # natural persona, persona projected out of a window
RANDOM_WINDOW = "random_window"  # persona steering, a matched random direction projected out
NATURAL_RANDOM_WINDOW = "natural_random_window"
POSITIVE_CONTROL = "positive_control"  # the injected vector itself projected out of the late window
MEDIATION = "mediation"  # refusal's projection clamped to its baseline value in a window

# Prompt sets a condition is measured on.
HARMFUL = "harmful"  # the test split
HARMFUL_VAL = "harmful_val"  # the validation split: choices only
SAFE = "safe"  # over-refusal
NEUTRAL = "neutral"  # coherence guard passages

# Outcomes of a generated reply.
REFUSE, COMPLY, INCOHERENT = "refuse", "comply", "incoherent"

# The headline arms (by role) that a spec may have generated rather than screened.
HEADLINE_ROLES = (
    "baseline",
    "refusal_ablated",
    "persona",
    "style",
    "random_add",
    "natural",
    "persona_late_window",
    "projection_only_late",
    "natural_late_window",
    "positive_control",
)
