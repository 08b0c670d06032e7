"""The declarative study spec (TOML): checked in full before any model is loaded.

Every key has a default (see ``data/study.toml``, the spec ``personagate reproduce`` runs); a spec
file only states what it changes. Unknown keys, bad windows, layers out of range and missing prompt
files are errors that name the key and the fix.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from personagate.errors import PersonagateError
from personagate.interventions import Window

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Overrides applied by --quick: fewer prompts, first-token screening, a coarser grid.
QUICK: dict[str, dict[str, Any]] = {
    "prompts": {"n_train": 16, "n_val": 6, "n_test": 16, "n_kl": 6, "n_safe": 6},
    "directions": {"refusal_positions": 1, "refusal_layer_stride": 3, "random_seeds": [0, 1], "persona_questions": 8},
    "steering": {
        "persona_coeffs": [4.0, 8.0],
        "reintroduce_layer_stride": 6,
        "window_width": 0.25,
        "window_stride": 0.25,
    },
    "generation": {"main": "first_token", "sweep": "first_token", "refusal_token_prompts": 12},
}

_MODES = ("generate", "first_token")


def default_spec_text() -> str:
    return resources.files("personagate").joinpath("data/study.toml").read_text()


def _defaults() -> dict[str, dict[str, Any]]:
    return tomllib.loads(default_spec_text())


@dataclass
class StudySpec:
    """A validated spec: ``data`` mirrors the TOML tables; ``base`` resolves relative prompt paths."""

    data: dict[str, dict[str, Any]]
    base: Path
    source: str

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.data[section]

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, quick: bool = False, overrides: dict[str, dict[str, Any]] | None = None
    ) -> StudySpec:
        """The default spec, updated by the file at ``path``, then by --quick, then by ``overrides``."""
        data = _defaults()
        base, source = Path.cwd(), "built-in study.toml"
        if path is not None:
            from personagate.program_files import read_toml

            path = Path(path)
            _merge(data, read_toml(path, "spec"), str(path))
            base, source = path.resolve().parent, str(path)
        if quick:
            _merge(data, copy.deepcopy(QUICK), "--quick")
        if overrides:
            _merge(data, overrides, "command line")
        spec = cls(data, base, source)
        spec.check_static()
        return spec

    # --- checks -----------------------------------------------------------------------------------

    def check_static(self) -> None:
        """Everything that needs no model: types, ranges, windows, prompt files."""
        g = self["generation"]
        for key in ("main", "sweep"):
            if g[key] not in _MODES:
                raise PersonagateError(f"generation.{key} = {g[key]!r}; use one of {', '.join(_MODES)}")
        for key in ("n_train", "n_val", "n_test", "n_kl", "n_safe"):
            if not isinstance(self["prompts"][key], int) or self["prompts"][key] < 1:
                raise PersonagateError(f"prompts.{key} must be a positive integer")
        for key in ("window_width", "window_stride"):
            value = self["steering"][key]
            if not isinstance(value, (int, float)) or value <= 0:
                raise PersonagateError(f"steering.{key} must be positive (a depth fraction or a block count)")
        for text in self["steering"]["reintroduce_windows"]:
            window = Window.parse(text)
            if window.fractional and not 0 <= float(window.start) < float(window.stop) <= 1:
                raise PersonagateError(f"steering.reintroduce_windows: {text!r} must be START:STOP with start < stop")
            if not window.fractional and not 0 <= int(window.start) < int(window.stop):
                raise PersonagateError(f"steering.reintroduce_windows: {text!r} must be START:STOP with start < stop")
        if not self["steering"]["persona_coeffs"]:
            raise PersonagateError("steering.persona_coeffs must list at least one coefficient")
        for key in ("harmful", "harmless", "safe"):
            self.prompts(key)  # raises on a missing file or unknown built-in set
        for key in ("refusal", "persona"):
            if (value := self["directions"][key]) and not self.path(value).is_file():
                raise PersonagateError(f"directions.{key}: no such vector file {value!r}")

    def check_layers(self, n_layers: int) -> None:
        """The checks that need the model's block count (read from its config, before loading weights)."""
        layer = self["steering"]["persona_layer"]
        self.persona_layer(n_layers)
        for text in self["steering"]["reintroduce_windows"]:
            try:
                Window.parse(text).resolve(n_layers)
            except PersonagateError as exc:
                raise PersonagateError(f"steering.reintroduce_windows: {exc}") from None
        if isinstance(layer, int) and not 0 <= layer < n_layers:
            raise PersonagateError(
                f"steering.persona_layer = {layer} is out of range; the model has layers "
                f"0..{n_layers - 1} (or give a depth fraction such as 0.5)"
            )

    # --- accessors --------------------------------------------------------------------------------

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p

    def prompts(self, key: str) -> list[str]:
        from personagate.prompts import load_xstest_safe, resolve_prompt_source

        source = self["prompts"][key]
        try:
            if source.startswith("xstest:"):
                return load_xstest_safe(self.path(source[len("xstest:") :]))
            return resolve_prompt_source(source, self.base, self["prompts"]["field"] or None)
        except PersonagateError as exc:
            raise PersonagateError(f"prompts.{key}: {exc}") from None

    def persona_layer(self, n_layers: int) -> int:
        value = self["steering"]["persona_layer"]
        layer = round(value * n_layers) if isinstance(value, float) else int(value)
        if not 0 <= layer < n_layers:
            raise PersonagateError(
                f"steering.persona_layer = {value} is out of range; the model has layers "
                f"0..{n_layers - 1} (or give a depth fraction such as 0.5)"
            )
        return layer

    def blocks(self, value: int | float, n_layers: int) -> int:
        """A width or stride given as a depth fraction (float) or a block count (int), at least 1."""
        return max(1, round(value * n_layers)) if isinstance(value, float) else int(value)


def _merge(into: dict[str, dict[str, Any]], new: dict[str, Any], where: str) -> None:
    for section, table in new.items():
        if section not in into:
            raise PersonagateError(f"{where}: unknown section [{section}]; known: {', '.join(sorted(into))}")
        if not isinstance(table, dict):
            raise PersonagateError(f"{where}: [{section}] must be a table")
        for key, value in table.items():
            if key not in into[section]:
                known = ", ".join(sorted(into[section]))
                raise PersonagateError(f"{where}: unknown key {section}.{key}; known keys in [{section}]: {known}")
            default = into[section][key]
            if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, (list, str)) and not isinstance(value, type(default))
            ):
                raise PersonagateError(f"{where}: {section}.{key} must be a {type(default).__name__}")
            into[section][key] = value
