"""The project's modules import each other without a cycle, counting imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

from utils.paths import PROJECT_ROOT


def project_modules() -> dict[str, Path]:
    """Every module of the library (`utils/`, `networks.py`, `utility.py`) by dotted name."""
    modules = {"networks": PROJECT_ROOT / "networks.py", "utility": PROJECT_ROOT / "utility.py"}
    for path in sorted((PROJECT_ROOT / "utils").rglob("*.py")):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported(path: Path, known: set[str]) -> set[str]:
    """Project modules that `path` imports anywhere in its body (`from pkg import module` names the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found & known


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's own `__init__` running first is not counted)."""
    modules = project_modules()
    return {name: imported(path, set(modules)) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a path that starts and ends at the same module, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_an_import_inside_a_function_counts(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from utils.distill import METHODS\n    import utility\n")
    assert imported(source, {"utils.distill", "utility", "utils.data"}) == {"utils.distill", "utility"}


def test_the_project_has_no_import_cycle():
    graph = import_graph()
    assert {"utils.synthetic", "utils.executor", "utils.distill.experts", "utility"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_saved_set_format_does_not_know_the_methods():
    assert not {"utils.distill", "utils.distill.base"} & import_graph()["utils.synthetic"]
