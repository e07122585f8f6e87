"""The house's rules, read from the source: which world may import what, and no import cycles.

Every import is read with ``ast`` over the whole module tree, so an import inside a
function, a method or an ``if TYPE_CHECKING:`` block counts as much as one at the top;
``importlib.import_module("x")`` and ``__import__("x")`` with a literal name count too.
Relative imports are resolved to absolute names first, and ``from pkg import name`` names
``pkg.name`` as well as ``pkg`` (``name`` may be a submodule).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.support.lanes import torch_installed

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("btd_core", "btd_tui", "export")

TORCH_WORLD = ("torch", "torchvision", "denoising_diffusion_pytorch", "accelerate", "ema_pytorch")
RUNTIME_FORBIDDEN = (*TORCH_WORLD, "btd_core.model", "btd_core.cli", "export", "btd_tui")
"""What no module of the runtime world (btd_core minus model/ and cli/) may name."""
TUI_FORBIDDEN = (*TORCH_WORLD, "btd_core.model", "btd_core.cli", "export")
"""What no module of btd_tui/ may name (it sits on the runtime, beside the command layer)."""


@dataclass(frozen=True)
class Import:
    """One imported name, as written in ``module`` at ``line``."""

    module: str
    line: int
    names: tuple[str, ...]  # the module imported, then each ``module.name`` of a from-import
    text: str  # the import statement as written

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.text}"


def module_name(path: Path) -> str:
    """``btd_core/engine/scorer.py`` -> ``btd_core.engine.scorer``; packages by their folder."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@cache
def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    modules = {}
    for package in PROJECT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from {'.' * level}{target} import ...`` written in ``module``."""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, *([target] if target else [])])


def _literal_import_call(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("x")`` or ``__import__("x")``."""
    func = node.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if called not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    """Every import anywhere in ``module``'s file (functions, classes, branches included)."""
    path = project_modules()[module]
    return imports_in(module, path.read_text(encoding="utf-8"), path.name == "__init__.py")


def imports_in(module: str, source: str, is_package: bool = False) -> tuple[Import, ...]:
    """Every import anywhere in ``source``, the text of ``module``."""
    tree = ast.parse(source, filename=module)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = tuple(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            names = (base, *(f"{base}.{a.name}" for a in node.names if a.name != "*"))
        elif isinstance(node, ast.Call) and _literal_import_call(node):
            names = (_literal_import_call(node) or "",)
        else:
            continue
        text = " ".join((ast.get_source_segment(source, node) or ast.dump(node)).split())
        found.append((node.lineno, node.col_offset, Import(module, node.lineno, names, text)))
    return tuple(imp for _, _, imp in sorted(found, key=lambda item: item[:2]))


def _names(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations_in(imports: tuple[Import, ...], forbidden: tuple[str, ...]) -> list[str]:
    """``module:line: import ... -> names X`` for every import that names a forbidden X."""
    found = []
    for imp in imports:
        hits = sorted({f for name in imp.names for f in forbidden if _names(name, f)})
        if hits:
            found.append(f"{imp} -> names {', '.join(hits)}")
    return found


def violations(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """:func:`violations_in` over every import of ``modules``."""
    return [line for module in modules for line in violations_in(imports_of(module), forbidden)]


def runtime_modules() -> list[str]:
    """btd_core's modules outside model/ (torch world) and cli/ (the command layer)."""
    return [
        m
        for m in project_modules()
        if _names(m, "btd_core")
        and not _names(m, "btd_core.model")
        and not _names(m, "btd_core.cli")
    ]


def tui_modules() -> list[str]:
    return [m for m in project_modules() if _names(m, "btd_tui")]


def test_the_walk_sees_every_world():
    modules = project_modules()
    runtime = runtime_modules()
    assert "btd_core.engine.scorer" in runtime and "btd_core.study.discovery" in runtime
    assert not any(_names(m, "btd_core.model") or _names(m, "btd_core.cli") for m in runtime)
    assert "btd_tui.app" in tui_modules()
    assert "btd_core.model.diffusion" in modules and "export.cli" in modules


def test_the_reader_counts_imports_inside_functions_and_resolves_relative_ones():
    source = (
        "from . import sibling\n"
        "from ..model import diffusion as d\n"
        "import numpy as np, btd_core.slices.profiles\n"
        "class Later:\n"
        "    def run(self):\n"
        "        import torch.nn\n"
        "        from export.cli import main\n"
        "        return __import__('btd_tui.app'), importlib.import_module('accelerate')\n"
    )
    found = imports_in("btd_core.engine.scorer", source)
    assert [imp.names for imp in found] == [
        ("btd_core.engine", "btd_core.engine.sibling"),
        ("btd_core.model", "btd_core.model.diffusion"),
        ("numpy", "btd_core.slices.profiles"),
        ("torch.nn",),
        ("export.cli", "export.cli.main"),
        ("btd_tui.app",),
        ("accelerate",),
    ]
    package = imports_in("btd_core.engine", "from .scorer import Scorer", is_package=True)
    assert package[0].names == ("btd_core.engine.scorer", "btd_core.engine.scorer.Scorer")
    hits = violations_in(found, RUNTIME_FORBIDDEN)
    assert [line.split(" -> ")[1] for line in hits] == [
        "names btd_core.model",
        "names torch",
        "names export",
        "names btd_tui",
        "names accelerate",
    ]


def test_the_runtime_never_names_the_torch_world_the_cli_the_export_or_the_tui():
    found = violations(runtime_modules(), RUNTIME_FORBIDDEN)
    assert not found, "runtime modules import what they must not:\n" + "\n".join(found)


def test_the_tui_never_names_the_torch_world_the_model_the_cli_or_the_export():
    found = violations(tui_modules(), TUI_FORBIDDEN)
    assert not found, "btd_tui modules import what they must not:\n" + "\n".join(found)


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that importing ``name`` runs: the longest known dotted prefix."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in its source)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module in modules:
        for imp in imports_of(module):
            for name in imp.names:
                target = _target(name, modules)
                if target and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work.append((start, iter(sorted(graph[start]))))
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return sorted(components)


def test_cycle_finder_finds_cycles_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": {"f"}}
    assert cycles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_project_modules():
    modules = project_modules()
    found = cycles(import_graph())
    lines = []
    for component in found:
        members = set(component)
        edges = [
            imp
            for module in component
            for imp in imports_of(module)
            if any(_target(n, modules) in members - {module} for n in imp.names)
        ]
        lines.append("cycle: " + " <-> ".join(component))
        lines += [f"    {imp}" for imp in edges]
    assert not found, "import cycles between project modules:\n" + "\n".join(lines)


@torch_installed
def test_importing_every_runtime_and_tui_module_leaves_torch_out():
    """A fresh interpreter imports the whole runtime, the TUI and the CLI entry point."""
    modules = [m for m in runtime_modules() + tui_modules() if not m.endswith("__main__")] + [
        "btd_core.cli.main"
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import btd_core.cli.main\n"
        "btd_core.cli.main.build_parser()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{list(TORCH_WORLD)!r} or m.startswith('btd_core.model') or m.split('.')[0] == 'export')\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
