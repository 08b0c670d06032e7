"""Names shared by the conditions, the runner, the results and the report (no torch behind them)."""

from __future__ import annotations

from typing import Literal

Mode = Literal["generate", "first_token"]
MODES: tuple[Mode, ...] = ("generate", "first_token")

# Condition groups: the arms of the protocol.
BASELINE = "baseline"
REFUSAL_ABLATED = "refusal_ablated"
PERSONA_SWEEP = "persona_sweep"
REFERENCE = "reference"  # baseline and persona steering measured the way the sweeps are
REINTRODUCE_LAYER = "reintroduce_layer"
REINTRODUCE_WINDOW = "reintroduce_window"
PERSONA_WINDOW = "persona_window"
RANDOM_WINDOW = "random_window"

# Prompt sets a condition is measured on.
HARMFUL = "harmful"
SAFE = "safe"
KL = "kl"
