"""The package's layers: every import points down, no stage imports another, no import circle.

Every ``import`` / ``from ... import`` of the package (function-level ones too) is read from the
source. A module belongs to a group (its sub-package, or its own name at the top level), and each
group to a layer:

    mede2_plugin (the version)                   -1
    core                                          0   stage-neutral: files, questions, prompts, media, ...
    data, engines                                 1   question-bank loaders; vLLM helpers
    client                                        2   the model-calling layer (uses engines)
    curate, distill, mmrp, evaluate, train        3   the stages, side by side
    llamafactory_ext, testing                     4   LLaMA-Factory hooks (the judged converter uses mmrp); fake servers
    demo, tiny_model*, resources_cli              5   the demo's scripted roles, tools
    pipeline, review, cli, _autoload              6   orchestration and front ends

The reviews the stages apply (caption-stripping rewrites, flagged pairs) are core modules
(``core/review_log.py``, ``core/review_decisions.py``); the review app that writes them is a front end.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mede2_plugin"
LAYERS = {
    "core": 0, "data": 1, "engines": 1, "client": 2,
    "curate": 3, "distill": 3, "mmrp": 3, "evaluate": 3, "train": 3,
    "llamafactory_ext": 4, "testing": 4, "demo": 5, "tiny_model": 5, "resources_cli": 5,
    "pipeline": 6, "review": 6, "cli": 6, "_autoload": 6, "mede2_plugin": -1,
}
STAGES = ("curate", "distill", "mmrp", "evaluate", "train")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group(module: str) -> str:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else parts[0]
    return "tiny_model" if name.startswith("tiny_") else name


def imports(path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` of every package import in a file, function-level ones included."""
    found = []
    module = module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if base.startswith("mede2_plugin"):
                found += [(f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base, node.lineno)
                          for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("mede2_plugin")]
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> dict[str, list[tuple[str, int]]]:
    return {module_name(path): imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_group_has_a_layer() -> None:
    assert {group(module) for module in graph()} <= set(LAYERS), "give the new group a layer in LAYERS"


def test_imports_point_down_and_stages_stand_side_by_side() -> None:
    wrong = []
    for module, targets in graph().items():
        for target, line in targets:
            source, dest = group(module), group(target)
            if source != dest and LAYERS[dest] >= LAYERS[source]:
                kind = "between stages" if source in STAGES and dest in STAGES else "up or sideways"
                wrong.append(f"{module}:{line} -> {target} ({source} -> {dest}: {kind})")
    assert wrong == [], "forbidden imports:\n  " + "\n  ".join(wrong)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a list of modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle_between_groups() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph().items():
        for target, _ in targets:
            if group(module) != group(target):
                edges[group(module)].add(group(target))
    cycle = find_cycle(edges)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_checks_catch_a_sideways_import_and_a_circle(tmp_path: Path) -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert LAYERS[group("mede2_plugin.mmrp.judge")] == LAYERS[group("mede2_plugin.curate.common")]
    assert group("mede2_plugin.core.review_decisions") == "core" and group("mede2_plugin.review.app") == "review"


@pytest.mark.parametrize("folder", ["pipeline"])
def test_pipeline_is_smaller_than_the_largest_stage(folder: str) -> None:
    def lines(name: str) -> int:
        return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in (PACKAGE / name).rglob("*.py"))

    largest = max(STAGES, key=lines)
    assert lines(folder) < lines(largest), f"{folder}/ has {lines(folder)} lines, {largest}/ {lines(largest)}"
