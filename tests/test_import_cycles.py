"""No import cycles between polyspeech's modules. An import counts wherever it is in a file,
inside a function too (a lazy import still ties the two modules together), except in the body
of ``if TYPE_CHECKING:``, which never runs."""

from __future__ import annotations

import ast
from pathlib import Path

import polyspeech


def _module_names(package: Path) -> dict[str, Path]:
    """Each module's dotted name (a package's is its ``__init__.py``'s) and its file."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those in the body of an ``if TYPE_CHECKING:``."""
    found, pending = [], [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend([node.test, *node.orelse])
        else:
            pending.extend(ast.iter_child_nodes(node))
    return found


def _imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement asks for; a ``from`` import's names may be
    submodules, so each is given as ``base.name`` as well as ``base``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - node.level + 1]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(package: Path) -> dict[str, set[str]]:
    """For each module of ``package`` (a folder), the package's modules it imports."""
    modules = _module_names(package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            for name in _imported_names(node, module, is_package):
                while name and name not in modules:  # an attribute of a module: the module
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of two or more modules that each reach all the others, sorted."""
    reach = {}
    for start in graph:
        seen, pending = set(), [start]
        while pending:
            for target in graph[pending.pop()] - seen:
                seen.add(target)
                pending.append(target)
        reach[start] = seen
    groups = {
        tuple(sorted({m, *(n for n in reach[m] if m in reach[n])})) for m in graph if m in reach[m]
    }
    return sorted(list(group) for group in groups if len(group) > 1)


def test_polyspeech_has_no_import_cycle():
    package = Path(polyspeech.__file__).parent
    graph = import_graph(package)
    assert len(graph) > 1 and any(graph.values()), f"{package}: no modules or imports found"
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" ".join(group) for group in found)


def test_the_check_finds_cycles_through_lazy_and_relative_imports(tmp_path):
    files = {
        "__init__.py": "",
        "a.py": "import pkg.b\nfrom pkg import d\n",
        "b.py": "def later():\n    from .c import thing\n",  # inside a function
        "c.py": "from pkg.a import name\n",
        # only for annotations, so no cycle with a
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
        "e.py": "from pkg.sub.f import value\n",
        "sub/__init__.py": "",
        "sub/f.py": "from .. import e\n",  # two levels up, then the module e
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    graph = import_graph(tmp_path / "pkg")
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.e", "pkg.sub.f"]]
