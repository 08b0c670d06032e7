"""The package's shape, checked: no import cycle anywhere (imports inside functions count; imports
under ``if TYPE_CHECKING:`` do not, as they never run), every package folder has its ``__init__.py``,
no module of the study or the report over 300 lines, and no verdict rule outside the registry."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "personagate"
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules a module imports when it runs, resolved to submodules where named."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
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
    found = modules()
    known = set(found)
    graph = {name: imports_of(path, known) for name, path in found.items()}
    assert graph["personagate.report.html"] >= {"personagate.experiments.analysis.results"}  # the parser sees imports
    assert cycles(graph) == []


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
    from personagate.experiments.design.spec import StudySpec

    rule_modules = {p.stem for p in (PACKAGE / "experiments" / "analysis" / "rules").glob("*.py")} - {
        "__init__",
        "registry",
    }
    assert rule_modules == set(RULES)  # one module per rule, each registered under its module's name
    for protocol in ("v2", "v1"):
        assert {f.rule for f in StudySpec.load(protocol=protocol).findings} <= set(RULES)
