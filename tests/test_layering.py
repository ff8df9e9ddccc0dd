"""The house rule, checked on every module's imports (those inside functions included): data flows one
way down the pipeline, so a subpackage imports only from the ones before it in LAYERS, and no two
modules import each other, directly or around a loop. Library code (everything but cli/) imports
slmkit modules at the top: an import inside a function is for the CLI's start-up time or an optional
third-party dependency, never for hiding an arrow that points up. The README's Development section
states the same order."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "slmkit"

# Lazy imports kept for a command's start-up cost, each with its reason (the only ones allowed outside cli/).
LAZY_FOR_STARTUP = {
    ("slmkit/data/__init__.py", "slmkit.data.loaders"): "the loaders need torch; `slm prepare` must not load it "
                                                       "(~1 s and ~190 MB)",
}

# Top to bottom: each layer may import the layers above it (and itself), never one below.
LAYERS = ["errors", "fileio", "config", "tokenizer", "data", "model", "quant", "interop", "loading", "infer",
          "eval", "train", "finetune", "align", "serve", "pipeline", "cli", "__main__"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """'slmkit.infer.engine' -> 'infer'; None for the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported slmkit module, line, inside a function) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    found = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names if a.name.startswith("slmkit"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - child.level + 1] + ([base] if base else []))
                if base.startswith("slmkit"):
                    for alias in child.names:  # `from slmkit.data import prepare` may name a submodule
                        candidate = f"{base}.{alias.name}"
                        found.append((candidate if _exists(candidate) else base, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def _exists(module: str) -> bool:
    path = SRC.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_subpackage_has_a_place_in_the_order():
    for module in all_modules():
        layer = layer_of(module)
        assert layer is None or layer in LAYERS, f"{module}: add '{layer}' to LAYERS (and the README)"


def test_imports_point_one_way():
    arrows = []
    for module, path in all_modules().items():
        here = layer_of(module)
        for target, line, _ in imports_of(path):
            there = layer_of(target)
            if here and there and LAYERS.index(there) > LAYERS.index(here):
                arrows.append(f"{path.relative_to(SRC)}:{line} imports {target} ({here} -> {there}, upward)")
    assert not arrows, "\n".join(arrows)


def test_library_code_imports_slmkit_at_the_top():
    hidden = []
    for module, path in all_modules().items():
        if layer_of(module) in ("cli", "__main__"):
            continue
        where = str(path.relative_to(SRC))
        hidden += [f"{where}:{line} imports {target} inside a function"
                   for target, line, in_function in imports_of(path)
                   if in_function and (where, target) not in LAZY_FOR_STARTUP]
    assert not hidden, "\n".join(hidden)


def test_no_import_cycles_between_modules():
    modules = all_modules()
    graph = {m: sorted({t for t, _, _ in imports_of(p) if t in modules and t != m}) for m, p in modules.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of ideas: ignore arrows into a
    # package from inside it (the parent is imported first by Python anyway).
    for m in graph:
        graph[m] = [t for t in graph[m] if not m.startswith(t + ".")]
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def strongconnect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
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
                out.append(sorted(component) + [sorted(component)[0]])

    for v in graph:
        if v not in index:
            strongconnect(v)
    return out


@pytest.mark.parametrize("source, expected", [
    ("from slmkit.infer import Generator\n", [("slmkit.infer", 1, False)]),
    ("def f():\n    from slmkit.train import run\n", [("slmkit.train.run", 2, True)]),
    ("from . import kernels\n", [("slmkit.quant.kernels", 1, False)]),
])
def test_the_import_parser_sees_what_it_must(tmp_path, source, expected):
    """The checks above are only as good as this parser: planted imports are found."""
    fake = SRC / "slmkit" / "quant" / "_layering_probe.py"
    fake.write_text(source, encoding="utf-8")
    try:
        assert imports_of(fake) == expected
    finally:
        fake.unlink()
