"""The house rules a newcomer relies on, checked: no import cycle inside sockact/ (lazy imports
included), and the hand-over layer is one machine with thin drivers."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "sockact"


def imports() -> dict[str, set[str]]:
    """module → the sockact modules it imports, anywhere in it but under ``if TYPE_CHECKING:``."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        typing_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
            for node in ast.walk(block)
        }
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level and id(node) not in typing_only:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                if node.module:
                    deps.add(".".join([*base, node.module]))
                else:
                    deps |= {".".join([*base, alias.name]) for alias in node.names}
        graph[module] = deps
    return graph


def test_no_import_cycle() -> None:
    graph = imports()
    assert "sockact._upgrade" in graph and "sockact._handoff" in graph
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, " → ".join([*path, module])
        if module in done:
            return
        for dep in graph.get(module, set()) & set(graph):
            visit(dep, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_the_machine_is_pure_and_every_driver_uses_it() -> None:
    graph = imports()
    # no I/O module; of sockact only the records its events are made of, which import nothing
    assert graph["sockact._handoff"] == {"sockact._record"} and graph["sockact._record"] == set()
    for driver in ("sockact._upgrade", "sockact._supervisor", "sockact._demo"):
        assert {"sockact._handoff", "sockact._drive"} <= graph[driver], driver
    assert "sockact._upgrade" not in graph["sockact._supervisor"]  # the PID file has its own module
    assert "sockact._upgrade" not in graph["sockact._notify"]  # the successor's handshake lives there
