"""personagate inside Inspect (UK AISI's evaluation framework): a model provider that runs any Inspect
task on a chat model under a personagate steering program.

    inspect eval TASK --model personagate/MODEL -M program=FILE.toml

``MODEL`` is what ``personagate.load_model`` takes (``default``, a Hub id, a folder, a ``.gguf``
file). Installed by the ``inspect`` extra, registered through the ``inspect_ai`` entry point group;
without the extra nothing in personagate imports Inspect.
"""
