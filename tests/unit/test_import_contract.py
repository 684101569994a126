"""The dependency direction of shared/DESIGN.md, checked from the source: faces (``api``, ``cli``)
-> ``services`` (the composition root) -> the core -> ``storage``; nothing below a face imports
it, the core never imports FastAPI, and dignity's subpackages import one another without cycles.

Every import statement counts for the layering, including those inside functions and under
``TYPE_CHECKING``: a lazy or type-only import of a face is still a dependency on it. For cycles,
imports under ``TYPE_CHECKING`` do not count (they never run, so they cannot form an import
cycle; a protocol named in an annotation is not a dependency of behaviour), lazy ones do.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "dignity"
FACES = ("dignity.api", "dignity.cli", "dignity.worker")
ENTRY_POINTS = ("dignity.__main__",)  # ``python -m dignity`` is the CLI
WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str], *, type_only: bool = True) -> Iterator[tuple[int, str]]:
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    return imports_in(path.read_text(encoding="utf-8"), package, known, type_only=type_only)


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """Ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                out.update(id(n) for n in ast.walk(stmt))
    return out


def imports_in(
    source: str, package: str, known: set[str], *, type_only: bool = True
) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in ``source`` (a module of ``package``), resolved to the
    module it loads: ``from dignity.x import y`` is ``dignity.x.y`` when that is a module,
    else ``dignity.x``. ``type_only=False`` leaves out imports under ``TYPE_CHECKING``."""
    tree = ast.parse(source)
    skip = set() if type_only else _type_checking_blocks(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield node.lineno, full if full in known else base


def subpackage(name: str) -> str:
    """``dignity.matching.engine`` -> ``dignity.matching``; the root stays ``dignity``."""
    return ".".join(name.split(".")[:2])


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        for _, target in imports_of(path, known, type_only=False):
            if target.startswith("dignity.") and subpackage(target) != subpackage(name):
                edges.setdefault(subpackage(name), set()).add(subpackage(target))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_nothing_below_the_faces_imports_them() -> None:
    mods = modules()
    offenders = []
    for name, path in mods.items():
        if name.startswith(FACES) or name in ENTRY_POINTS:
            continue
        for line, target in imports_of(path, set(mods)):
            if target.startswith(FACES):
                offenders.append(f"{path.relative_to(SRC)}:{line} imports {target}")
    assert offenders == []


def test_the_core_never_imports_a_web_framework() -> None:
    mods = modules()
    offenders = []
    for name, path in mods.items():
        if name.startswith(FACES):
            continue
        for line, target in imports_of(path, set(mods)):
            if target.split(".")[0] in WEB_FRAMEWORKS:
                offenders.append(f"{path.relative_to(SRC)}:{line} imports {target}")
    assert offenders == []


def test_only_faces_and_workers_import_the_composition_root() -> None:
    mods = modules()
    allowed = (*FACES, "dignity.services")
    offenders = [
        f"{path.relative_to(SRC)}:{line}"
        for name, path in mods.items()
        if not name.startswith(allowed)
        for line, target in imports_of(path, set(mods))
        if target.startswith("dignity.services")
    ]
    assert offenders == []


def test_subpackages_import_each_other_without_cycles() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(
    edges: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert cycles(edges) == expected


def test_the_import_reader_sees_lazy_and_type_only_imports() -> None:
    # The checks above are only as good as this reader: a function-level or TYPE_CHECKING
    # import of a face must be seen, and relative imports resolved.
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from dignity.api.deps import Services\n"
        "def f():\n    import dignity.cli.app\n    from . import engine\n"
        "    from .banks import BankService\n"
    )
    known = set(modules())
    found = {target for _, target in imports_in(source, "dignity.matching", known)}
    at_run_time = {t for _, t in imports_in(source, "dignity.matching", known, type_only=False)}
    assert "dignity.api.deps" not in at_run_time and "dignity.cli.app" in at_run_time
    assert {
        "dignity.api.deps",
        "dignity.cli.app",
        "dignity.matching.engine",
        "dignity.matching.banks",
    } <= found
