"""The tests' own house rules: shared helpers live in ``tests/support`` (and the two builders
``tests/onnx_scorer.py``, ``tests/study_builder.py``), never in another test module or in
``conftest.py``; and every test file has its lane (``tests/support/lanes.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.lanes import FILE_LANES, LANES, SLOW_TESTS

TESTS = Path(__file__).resolve().parent


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every module that ``source`` imports, anywhere in its tree
    (``from a import b`` names ``a`` and ``a.b``: ``b`` may be a module)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def is_test_module(name: str) -> bool:
    """``tests.test_x`` or ``tests.conftest``: modules pytest runs, not helpers to import."""
    parts = name.split(".")
    return (
        len(parts) >= 2
        and parts[0] == "tests"
        and (parts[1].startswith("test_") or parts[1] == "conftest")
    )


def checked_files() -> list[Path]:
    """Every file pytest collects tests from, and the helpers in ``tests/support``."""
    return sorted([*TESTS.glob("test_*.py"), *(TESTS / "support").glob("*.py")])


def test_the_check_sees_an_import_of_a_test_module_in_any_form():
    source = (
        "import tests.test_a\nfrom tests.test_b import helper\nfrom tests import test_c\n"
        "def f():\n    from tests.conftest import fixture\n"
        "from tests.support.cards import make_card\nfrom tests.study_builder import write_series\n"
    )
    named = {name for _, name in imported_modules(source) if is_test_module(name)}
    assert named == {
        "tests.test_a",
        "tests.test_b",
        "tests.test_b.helper",
        "tests.test_c",
        "tests.conftest",
        "tests.conftest.fixture",
    }


def test_no_test_module_imports_another_test_module_or_conftest():
    offences = [
        f"{path.relative_to(TESTS.parent)}:{line}: imports {name}"
        for path in checked_files()
        for line, name in imported_modules(path.read_text(encoding="utf-8"))
        if is_test_module(name)
    ]
    assert offences == [], "move shared helpers to tests/support:\n" + "\n".join(offences)


def test_every_test_file_has_one_lane_and_the_table_names_only_real_files():
    files = {path.name for path in TESTS.glob("test_*.py")}
    assert set(FILE_LANES) == files
    assert set(FILE_LANES.values()) <= set(LANES)


def test_every_test_named_slow_by_the_table_is_in_a_real_file():
    assert {name.split("::")[0] for name in SLOW_TESTS} <= set(FILE_LANES)


EXTRA_MARKS = {
    "torch": "torch",
    "denoising_diffusion_pytorch": "torch",
    "accelerate": "torch",
    "ray": "ray",
}
"""Packages of the extras beyond ``.[test]`` (train, archive), and the mark a test module that
needs one carries: CI runs the marked tests with the extras installed and the rest in the
torch-free venv (``.ci/run``), so a module skipped without its extra must carry the mark, or
neither run would ever run it."""


def module_marks(tree: ast.Module) -> set[str]:
    """The ``pytest.mark.NAME`` names in the module's ``pytestmark`` assignment."""
    marks: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            for sub in ast.walk(node.value):
                if (
                    isinstance(sub, ast.Attribute)
                    and isinstance(sub.value, ast.Attribute)
                    and sub.value.attr == "mark"
                ):
                    marks.add(sub.attr)
    return marks


def skipped_without(tree: ast.Module) -> set[str]:
    """Packages the module ``pytest.importorskip``s at module level (skipping every test)."""
    names: set[str] = set()
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.Expr) else None
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr == "importorskip"
            and value.args
            and isinstance(value.args[0], ast.Constant)
        ):
            names.add(value.args[0].value)
    return names


def test_a_module_that_needs_an_extra_carries_its_mark():
    missing = []
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        needed = {EXTRA_MARKS[n] for n in skipped_without(tree) if n in EXTRA_MARKS}
        if needed - module_marks(tree):
            missing.append(f"{path.name}: pytestmark needs {sorted(needed - module_marks(tree))}")
    assert missing == []


def test_the_extra_check_sees_a_module_without_its_mark():
    bare = ast.parse('import pytest\nray = pytest.importorskip("ray")\n')
    marked = ast.parse(
        'import pytest\nray = pytest.importorskip("ray")\n'
        'pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.ray]\n'
    )
    assert skipped_without(bare) == {"ray"} and module_marks(bare) == set()
    assert module_marks(marked) == {"ray", "xdist_group"}
