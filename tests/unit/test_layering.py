"""The layout is the architecture: imports only point down (DESIGN.md, "Dependency rules").

Every module of the product is parsed (imports inside functions count too) and each import
checked against the rules below; a failure names the file, the line and the import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("keys", "pipeline", "workers")

#: (modules the rule is about, modules they must not import, why)
RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("keys", ("pipeline", "workers"), "keys/ is a library: it imports nothing of ours"),
    (
        "pipeline.store",
        (
            "pipeline.services",
            "pipeline.capture",
            "pipeline.bot",
            "pipeline.api",
            "pipeline.cli",
            "workers",
        ),
        "the store is below everything that uses it",
    ),
    (
        "pipeline.capture",
        ("pipeline.services", "pipeline.bot", "pipeline.api", "pipeline.cli", "workers"),
        "capture is fed by the layers above, never calls them",
    ),
    (
        "pipeline.services",
        ("pipeline.api", "pipeline.cli", "workers"),
        "the services are shared by the API and the CLI, below both",
    ),
    ("pipeline.bot", ("pipeline.api", "pipeline.cli", "workers"), "the bot is a top layer"),
    ("pipeline.api", ("pipeline.cli", "pipeline.bot", "workers"), "the API is a top layer"),
]
#: the only modules that may import workers/: the CLI's `worker` command
WORKERS_IMPORTERS = ("pipeline.cli.work",)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line, the module imported, every name it could bring in: ``from pipeline import
    workers`` brings in ``pipeline.workers``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, [alias.name]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            yield node.lineno, base, [base, *(f"{base}.{a.name}" for a in node.names)]


def _broken_rule(module: str, targets: list[str]) -> str | None:
    upward = not _within(module, "workers") and module not in WORKERS_IMPORTERS
    if upward and any(_within(t, "workers") for t in targets):
        return "nothing imports workers/ but the worker command"
    for layer, banned, why in RULES:
        if _within(module, layer) and any(_within(t, b) for t in targets for b in banned):
            return why
    return None


def forbidden_edges(root: Path) -> list[str]:
    """Every import under ``root`` that breaks a rule, as ``file:line: imports X (why)``."""
    found: list[str] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = _module_name(path, root)
            for line, shown, targets in _imports(path, module):
                why = _broken_rule(module, targets)
                if why is not None:
                    found.append(f"{path.relative_to(root)}:{line}: imports {shown} ({why})")
    return sorted(found)


def test_no_module_imports_across_a_forbidden_edge() -> None:
    assert forbidden_edges(ROOT) == []


def test_a_forbidden_import_is_named(tmp_path: Path) -> None:
    """The check can fail: a tree with bad edges is reported file by file."""
    files = {
        "keys/__init__.py": "",
        "keys/bad.py": "from pipeline.store import schema\n",
        "pipeline/__init__.py": "",
        "pipeline/store/__init__.py": "",
        "pipeline/store/worse.py": "def f():\n    from pipeline.services import meetings\n",
        "pipeline/services/__init__.py": "",
        "pipeline/services/late.py": "import workers.tasks\n",
        "pipeline/services/upward.py": "from ..api import app\n",
        "pipeline/services/sneaky.py": "from pipeline import cli\n",
        "pipeline/cli/__init__.py": "",
        "pipeline/cli/work.py": "from workers.app import app\n",
        "workers/__init__.py": "",
        "workers/tasks.py": "from pipeline.services import meetings\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = forbidden_edges(tmp_path)
    assert [f.split(" (")[0] for f in found] == [
        "keys/bad.py:1: imports pipeline.store",
        "pipeline/services/late.py:1: imports workers.tasks",
        "pipeline/services/sneaky.py:1: imports pipeline",
        "pipeline/services/upward.py:1: imports pipeline.api",
        "pipeline/store/worse.py:2: imports pipeline.services",
    ]
