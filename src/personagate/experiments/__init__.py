"""The study, by stage: ``design`` (what is run: spec, protocol, conditions, splits, names), ``storage``
(the run store and what it returns), ``analysis`` (results computed once from a store: rates, verdicts,
exports) and ``execution`` (work units, executors, the runner, the directions a run makes); ``study``
ties them together.

Imports point one way: design <- storage <- analysis <- execution <- study. The one exception is the
spec's vocabulary of verdict rules (``design.findings`` reads the rule registry of
``analysis.rules``, as program files read the op registry), whose modules need nothing from the
later stages at run time.
"""
