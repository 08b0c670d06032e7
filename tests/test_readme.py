"""README's Quickstart stays what CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _blocks(text: str) -> list[str]:
    parts = text.split("```bash\n")[1:]
    return [p.split("```")[0].strip() for p in parts]


def test_ci_runs_the_readme_test_command():
    quickstart = (ROOT / "README.md").read_text().split("## Quickstart")[1].split("\n## ")[0]
    commands = _blocks(quickstart)
    assert len(commands) == 2, "the Quickstart has exactly two commands"
    assert "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
