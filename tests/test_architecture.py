"""The shape of the product, read from its source (AST only: nothing is imported, no database).

- No import loop between modules, counting imports anywhere in a file (inside functions too) but
  not those under ``if TYPE_CHECKING:``, which never run.
- ``uploads`` imports nothing from ``learning``; ``dashboard`` does not import ``learning.api``.
- No product file over ``MAX_LINES`` lines (migrations aside).

The checker is tested on a small package built in a temporary directory, so a checker that
finds nothing cannot pass for a product that has nothing to find.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("constellation", "dashboard", "federation", "learning", "qigcenter", "uploads")
MAX_LINES = 450
# (importer package, imported module or package, why)
FORBIDDEN = (
    ("uploads", "learning", "learning reads uploads, never the other way"),
    ("dashboard", "learning.api", "learning.api is learning's REST layer, not a library"),
)


@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. "learning.ddp"
    target: str  # imported product module, e.g. "learning.training"
    path: Path  # the importing file, relative to the root
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.target}"


def product_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Module name → file, for every .py file of the packages (migrations aside)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if "migrations" in relative.parts:
                continue
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = relative
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in the file, with whether it sits under `if TYPE_CHECKING:`."""

    def walk(node: ast.AST, type_only: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_only
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                yield from walk(statement, True)
            for statement in node.orelse:
                yield from walk(statement, type_only)
            return
        for child in ast.iter_child_nodes(node):
            yield from walk(child, type_only)

    yield from walk(tree, False)


def _defines_getattr(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for node in tree.body
    )


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The product module ``name`` refers to: itself, or its longest known prefix."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def product_imports(root: Path, packages: Iterable[str]) -> list[Import]:
    """Every import of one product module by another, ``from pkg import module`` and relative
    imports resolved to module names."""
    modules = product_modules(root, packages)
    found: list[Import] = []
    for source, path in modules.items():
        tree = ast.parse((root / path).read_text(encoding="utf-8"), filename=str(path))
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        # A package that re-exports lazily (PEP 562 `__getattr__`) names its sources under
        # TYPE_CHECKING for type checkers; they are imported at run time, on first use.
        lazy = _defines_getattr(tree)
        for node, type_only in _statements(tree):
            type_only = type_only and not lazy
            if isinstance(node, ast.Import):
                targets = [_known(alias.name, modules) for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                targets = [
                    f"{base}.{alias.name}"
                    if f"{base}.{alias.name}" in modules
                    else _known(base, modules)
                    for alias in node.names
                ]
            for target in dict.fromkeys(targets):
                if target is not None and target != source:
                    found.append(Import(source, target, path, node.lineno, type_only))
    return found


def import_cycles(imports: Iterable[Import]) -> list[list[Import]]:
    """One shortest loop per strongly connected group of modules (type-only imports aside)."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if not imp.type_only:
            edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    # Tarjan's strongly connected components.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            connect(v)

    loops: list[list[Import]] = []
    for group in sorted(groups):
        start, members = group[0], set(group)
        came_from: dict[str, Import] = {}
        queue = deque([start])
        while queue:  # breadth first: the shortest way back to `start`
            v = queue.popleft()
            for w in sorted(edges.get(v, {})):
                if w in members and w not in came_from:
                    came_from[w] = edges[v][w]
                    queue.append(w)
        loop: list[Import] = []
        v = start
        while True:
            imp = came_from[v]
            loop.append(imp)
            v = imp.source
            if v == start:
                break
        loops.append(loop[::-1])
    return loops


def forbidden_imports(
    imports: Iterable[Import], rules: Iterable[tuple[str, str, str]]
) -> list[tuple[Import, str]]:
    """Imports that break a rule (type-only imports too: they still tie one app to the other)."""

    def within(module: str, package: str) -> bool:
        return module == package or module.startswith(package + ".")

    return [
        (imp, why)
        for imp in imports
        for importer, imported, why in rules
        if within(imp.source, importer) and within(imp.target, imported)
    ]


def long_files(root: Path, packages: Iterable[str], limit: int) -> list[tuple[Path, int]]:
    found = []
    for path in product_modules(root, packages).values():
        lines = len((root / path).read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found.append((path, lines))
    return found


def describe_loop(loop: list[Import]) -> str:
    return (
        "  "
        + " → ".join([loop[0].source, *(imp.target for imp in loop)])
        + "\n"
        + "\n".join(f"    {imp}" for imp in loop)
    )


# ---- the product ----------------------------------------------------------------------------


def test_no_module_imports_itself_through_others() -> None:
    loops = import_cycles(product_imports(ROOT, PRODUCT))
    assert not loops, (
        f"{len(loops)} import loop(s) (imports inside functions count):\n"
        + "\n".join(describe_loop(loop) for loop in loops)
    )


def test_the_layers_point_one_way() -> None:
    bad = forbidden_imports(product_imports(ROOT, PRODUCT), FORBIDDEN)
    assert not bad, "imports across the layers:\n" + "\n".join(
        f"  {imp} ({why})" for imp, why in bad
    )


def test_no_product_file_is_too_long() -> None:
    long = long_files(ROOT, PRODUCT, MAX_LINES)
    assert not long, f"files over {MAX_LINES} lines (probably two concepts each):\n" + "\n".join(
        f"  {path}: {lines} lines" for path, lines in long
    )


# ---- the checker itself ---------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_finds_loops_forbidden_imports_and_long_files(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "shop/__init__.py": "",
            # a → b (relative, `from pkg import module`) → c (inside a function) → a (absolute)
            "shop/a.py": "from . import b\n",
            "shop/b.py": "def f():\n    from shop.c import price\n    return price\n",
            "shop/c.py": "import shop.a\n\nprice = 1\n",
            # d ↔ e only through TYPE_CHECKING: no loop
            "shop/d.py": "import typing\n\nif typing.TYPE_CHECKING:\n    from shop.e import E\n",
            "shop/e.py": "from shop.d import D\n",
            # two levels up, from a subpackage; and a loop through a lazy package's re-export
            "shop/sub/__init__.py": "",
            "shop/sub/deep.py": "from ..d import D\n",
            "shop/lazy/__init__.py": (
                "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                "    from .impl import Thing\n\n\ndef __getattr__(name):\n    ...\n"
            ),
            "shop/lazy/impl.py": "from shop.lazy import other\n",
            "shop/long.py": "x = 1\n" * 11,
            "shop/migrations/0001_initial.py": "x = 1\n" * 11,
            "bank/__init__.py": "",
            "bank/api.py": "",
            "bank/ledger.py": "",
            "till/__init__.py": "from bank import ledger\n",  # allowed
            "till/views.py": "def pay():\n    from bank.api import charge\n",  # forbidden
            "till/types.py": (
                "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import bank\n"
            ),
        },
    )
    packages = ("shop", "bank", "till")
    imports = product_imports(tmp_path, packages)
    pairs = {(imp.source, imp.target) for imp in imports}
    assert {
        ("shop.a", "shop.b"),
        ("shop.b", "shop.c"),
        ("shop.c", "shop.a"),
        ("shop.sub.deep", "shop.d"),
        ("till", "bank.ledger"),
        ("till.views", "bank.api"),
    } <= pairs, pairs

    loops = import_cycles(imports)
    assert [[(imp.source, imp.target) for imp in loop] for loop in loops] == [
        [("shop.a", "shop.b"), ("shop.b", "shop.c"), ("shop.c", "shop.a")],
        [("shop.lazy", "shop.lazy.impl"), ("shop.lazy.impl", "shop.lazy")],
    ]
    message = describe_loop(loops[0])
    assert "shop.a → shop.b → shop.c → shop.a" in message, message
    assert f"{Path('shop/b.py')}:2 imports shop.c" in message, message

    rules = (("till", "bank.api", "no views"), ("shop", "bank", "no bank"))
    bad = forbidden_imports(imports, rules)
    assert [(str(imp.path), imp.line, why) for imp, why in bad] == [
        (str(Path("till/views.py")), 2, "no views")
    ]
    everything = forbidden_imports(imports, (("till", "bank", "no bank at all"),))
    assert [(imp.source, imp.type_only) for imp, _ in everything] == [
        ("till", False),
        ("till.types", True),
        ("till.views", False),
    ]

    assert long_files(tmp_path, packages, 10) == [(Path("shop/long.py"), 11)]
    assert long_files(tmp_path, packages, 11) == []
