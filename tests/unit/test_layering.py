"""Imports flow one way: a package of `shardline` imports only packages below it.

Every import counts, module level or inside a function (a lazy import is still a
dependency). Peers in one layer do not import each other. A new package must be
given a place here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "shardline"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("v1", "errors", "generation"),  # leaves: generated stubs, the error tree, one generation's types
    ("wire", "grpc_status"),  # names on the wire; error -> gRPC status
    ("security",),
    ("spec",),
    ("telemetry",),
    ("engine", "policies"),
    ("router",),
    ("serve",),
    ("client", "outcomes"),  # speak to a running deployment over the wire
    ("faults", "models"),
    ("cli", "rpc_codegen"),  # entry points
)
"""Lowest first."""
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


def package_of(module: str) -> str:
    """`shardline.router.grpc.server` -> `router`."""
    return module.split(".")[1]


def imported(path: Path) -> Iterator[tuple[str, int]]:
    """Every `shardline.*` module `path` imports, with the line that imports it."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "shardline":
            names = [f"shardline.{alias.name}" for alias in node.names]  # `from shardline import wire`
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}:{node.lineno}: relative import; write it absolute")
        else:
            continue
        yield from ((name, node.lineno) for name in names if name.startswith("shardline."))


def edges() -> Iterator[tuple[str, str, str, str]]:
    """(importing package, imported package, where, what) for imports across packages."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) == 1 and relative.name == "__init__.py":
            continue
        source = relative.parts[0].removesuffix(".py")
        for module, line in imported(path):
            target = package_of(module)
            if target != source:
                yield source, target, f"shardline/{relative}:{line}", module


def test_every_package_has_a_layer():
    packages = {
        p.name.removesuffix(".py")
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()
    }
    assert packages - RANK.keys() == set(), "give these packages a place in LAYERS"
    assert RANK.keys() - packages == set(), "LAYERS names packages that no longer exist"


def test_imports_only_reach_down():
    upward = [
        f"{where} imports {module}: {source} (layer {RANK[source]}) may not import {target} (layer {RANK[target]})"
        for source, target, where, module in edges()
        if RANK[target] >= RANK[source]
    ]
    assert upward == [], "\n".join(upward)


def test_packages_form_no_cycle():
    graph: dict[str, set[str]] = {}
    for source, target, _, _ in edges():
        graph.setdefault(source, set()).add(target)
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, "import cycle: " + " -> ".join(path[path.index(package) :] + (package,))
        if package not in done:
            for target in sorted(graph.get(package, ())):
                visit(target, path + (package,))
            done.add(package)

    for package in sorted(graph):
        visit(package, ())
