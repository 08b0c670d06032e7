"""The ``inspect_ai`` entry point: registers the ``personagate`` model provider. Inspect imports this
module when it meets ``--model personagate/...``; the model code behind it loads only then."""

from __future__ import annotations

from inspect_ai.model import modelapi


@modelapi(name="personagate")
def personagate():  # type: ignore[no-untyped-def]
    from personagate.inspect.model import SteeredModelAPI

    return SteeredModelAPI
