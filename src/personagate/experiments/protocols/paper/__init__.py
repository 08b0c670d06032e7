"""Protocol ``paper``: arms and their blocks in ``arms``, stages in ``stages``, their vectors made by
our code in ``vectors``."""

from personagate.experiments.protocols.paper.protocol import Paper

PROTOCOL = Paper()
