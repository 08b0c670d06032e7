"""The package's shape, checked: no import cycle anywhere (imports inside functions count, and so do
imports under ``if TYPE_CHECKING:``: a cycle of types is a cycle of design), the study's subpackages
import only downwards (design < storage < analysis < execution < protocols < study), every package
folder has its ``__init__.py``, no module of the study or the report over 300 lines, and no verdict
rule outside the registry."""

from __future__ import annotations

import ast
from pathlib import Path

from personagate.experiments.protocols import load_spec

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "personagate"
MAX_LINES = 300


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, package): p for p in package.rglob("*.py")}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    found = modules(package)
    return {name: imports_of(path, set(found), package) for name, path in found.items()}


def imports_of(path: Path, known: set[str], root: Path = PACKAGE) -> set[str]:
    """The package modules a module imports (at run time or for its types), resolved to submodules."""
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            for alias in node.names:
                target = f"{base}.{alias.name}"
                out.add(target if target in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in out if m in known and m != this}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert graph["personagate.report.html"] >= {"personagate.experiments.analysis.results"}  # the parser sees imports
    assert cycles(graph) == []


def test_a_cycle_hidden_under_type_checking_is_seen(tmp_path):
    """The circle of e00fa29 (design/spec -> design/findings -> analysis/rules -> analysis/scope ->
    design/layout -> design/spec) was closed by an import under TYPE_CHECKING, which the graph then
    skipped; the same shape, in a package of two modules, is a cycle now."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.b import B\n")
    (package / "b.py").write_text("from pkg.a import A\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


# The study's stages, lowest first: a module imports only from its own stage or those below it.
STAGES = ("design", "storage", "analysis", "execution", "protocols", "study")


def stage_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["personagate", "experiments"] or len(parts) < 3:
        return None
    return STAGES.index(parts[2]) if parts[2] in STAGES else None


def test_the_study_stages_import_only_downwards():
    found = modules()
    known = set(found)
    upward = sorted(
        f"{name} -> {target}"
        for name, path in found.items()
        if (here := stage_of(name)) is not None
        for target in imports_of(path, known)
        if (there := stage_of(target)) is not None and there > here
    )
    assert upward == []


def test_design_imports_nothing_from_the_later_stages():
    found = modules()
    known = set(found)
    for name, path in found.items():
        if name.startswith("personagate.experiments.design"):
            late = {t for t in imports_of(path, known) if (stage_of(t) or 0) > 0}
            assert late == set(), name


def test_every_package_folder_has_an_init():
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    assert [str(f) for f in sorted(folders) if not (f / "__init__.py").is_file()] == []


def test_study_and_report_modules_stay_small():
    too_long = {
        name: len(path.read_text().splitlines())
        for name, path in modules().items()
        if name.startswith(("personagate.experiments", "personagate.report"))
        and len(path.read_text().splitlines()) > MAX_LINES
    }
    assert too_long == {}


def test_every_shipped_rule_is_registered_and_every_finding_names_one():
    from personagate.experiments.analysis.rules import RULES

    rule_modules = {p.stem for p in (PACKAGE / "experiments" / "analysis" / "rules").glob("*.py")} - {
        "__init__",
        "registry",
    }
    assert rule_modules == set(RULES)  # one module per rule, each registered under its module's name
    for protocol in ("v2", "v1"):
        assert {f.rule for f in load_spec(protocol=protocol).findings} <= set(RULES)
