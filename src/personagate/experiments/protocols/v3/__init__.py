"""Protocol v3 (ours): arms in ``arms``, ``sweeps`` and ``multiturn_arms``; stages in ``stages`` and
``multiturn_stages``; its directions in ``vectors``."""

from personagate.experiments.protocols.v3.protocol import V3

PROTOCOL = V3()
