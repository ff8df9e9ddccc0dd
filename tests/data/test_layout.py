"""data/'s rooms import one way: sources -> clean -> dedup -> prepare, each from the shared top modules
(config, manifest, heap) and earlier rooms only; the read side at the top imports no room. Every
import counts, those inside functions too (parsed, not run)."""

import ast
from pathlib import Path

import slmkit.data

DATA = Path(slmkit.data.__file__).parent
ROOMS = ["sources", "clean", "dedup", "prepare"]
SHARED = {"config", "manifest", "heap", "rolling_windows"}  # top modules any room (and the read side) may use


def data_imports(path: Path) -> set[str]:
    """Modules under slmkit.data that `path` imports, as dotted names relative to slmkit.data."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("slmkit.data"):
            base = node.module.removeprefix("slmkit.data").lstrip(".")
            found |= {base} if base else {a.name for a in node.names}  # `from slmkit.data import x`: x
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("slmkit.data.") for a in node.names if a.name.startswith("slmkit.data.")}
    return found


def test_rooms_import_one_way():
    wrong = []
    for path in sorted(DATA.rglob("*.py")):
        where = path.relative_to(DATA).parts
        room = where[0] if len(where) > 1 else None
        for target in data_imports(path):
            head = target.split(".")[0]
            if room is None:  # the top: the shared modules and the read side
                allowed = path.name == "__init__.py" or head in SHARED
            elif head in ROOMS:
                allowed = ROOMS.index(head) <= ROOMS.index(room)
            else:
                allowed = head in SHARED
            if not allowed:
                wrong.append(f"{path.relative_to(DATA)} imports slmkit.data.{target}")
    assert not wrong, wrong
    assert {p.name for p in DATA.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == set(ROOMS)


def test_the_check_sees_an_arrow_back(tmp_path):
    planted = tmp_path / "m.py"
    planted.write_text("def f():\n    from slmkit.data.prepare.shards import plan_shards\n")
    assert data_imports(planted) == {"prepare.shards"}
    planted.write_text("from slmkit.data import loaders\nimport slmkit.data.dedup.minhash\n")
    assert data_imports(planted) == {"loaders", "dedup.minhash"}
