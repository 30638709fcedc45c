"""The package's import graph, read from the source: no cycles, and no stage imports a later one.

Top-level imports form the load-time graph (lazy imports inside functions are deliberate and kept
out); the stage rule covers every import, lazy ones included, since a lazy import still couples a
stage to the code after it.
"""

import ast
from pathlib import Path

import lightcoder

SRC = Path(lightcoder.__file__).resolve().parent
# The stages in pipeline order: a module may import its own stage and earlier ones, never a later one.
# Loading a fine-tuned run (base + adapter) is part of loading a model to serve, so the adapter
# modules sit with infer/serve; finetune's orchestration is last, with the other commands.
STAGES = [("data",), ("tokenizer",), ("fim", "packing", "pack_context", "windows", "shards"), ("model", "train"),
          ("infer", "serve", "finetune.base", "finetune.lora", "finetune.deploy"), ("eval",),
          ("finetune", "stages", "quickstart", "ablate", "ablate_report", "report")]
# fim cuts a training example with the server's own prompt builder, so that the example is, token for
# token, the prompt `lightcoder serve` sends (fim/context.py): the one deliberate look ahead.
ALLOWED = {("fim", "infer.prompts"), ("fim", "infer.templates")}


def stage_of(name: str) -> int | None:
    """Index in STAGES of lightcoder.<part>[.<module>]..., or None for shared modules (configs, artifacts, ...)."""
    parts = name.split(".")[1:]
    if parts[1:2] == ["config"]:  # an area's config: light dataclasses that lightcoder.config composes
        return None
    for key in (".".join(parts[:2]), ".".join(parts[:1])):  # finetune.deploy before finetune
        found = next((i for i, group in enumerate(STAGES) if key in group), None)
        if found is not None:
            return found
    return None


def module_name(path: Path) -> str:
    parts = ("lightcoder",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.Module, *, top_level: bool) -> set[str]:
    nodes = tree.body if top_level else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lightcoder"):
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("lightcoder")}
    return names


def source_modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in SRC.rglob("*.py")}


def test_no_import_cycles_at_load_time():
    trees = source_modules()
    graph = {m: {d for d in imports(t, top_level=True) if d in trees and d != m} for m, t in trees.items()}
    assert len(graph) > 100 and sum(map(len, graph.values())) > 200  # the real package, not an empty walk
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join(path[path.index(dep):] + [module, dep])
            if dep not in state:
                visit(dep, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_no_stage_imports_a_later_stage():
    trees = source_modules()
    offences = []
    for module, tree in trees.items():
        own = stage_of(module)
        for dep in imports(tree, top_level=False):
            later = own is not None and stage_of(dep) is not None and stage_of(dep) > own
            if later and (module.split(".")[1], ".".join(dep.split(".")[1:3])) not in ALLOWED:
                offences.append(f"{module} imports {dep}")
    assert sum(1 for m in trees if stage_of(m) is not None) > 100  # the stages' modules were read
    assert offences == []
