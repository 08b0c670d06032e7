"""Verdict rules, one module each, found here and registered by name (``RULES``).

Adding a rule is one module in this package with one ``@register``-ed function, plus its tests: the
spec's checks, the verdict computation and the report pick it up from ``RULES``.
"""

from __future__ import annotations

import importlib
import pkgutil

from personagate.experiments.analysis.rules.registry import RULES, Rule, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["RULES", "Rule", "register"]
