"""Refusal measurement: phrase rules, first-token refusal score, optional judges, rates with intervals."""

from personagate.scoring.phrases import is_refusal, refusal_flags
from personagate.scoring.rates import Rate, rates_by_category, refusal_rate, wilson_interval

__all__ = ["Rate", "is_refusal", "rates_by_category", "refusal_flags", "refusal_rate", "wilson_interval"]
