"""The package's shape: module-level imports form no circle, and checkpoints and exports are read
through one typed record (models.info.ModelInfo), never by string keys elsewhere."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rockdet"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """rockdet modules imported at module level (imports inside functions are deliberate and lazy)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rockdet"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found |= {name for name in names if name in known} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("rockdet")}
    return found & known


def test_module_level_imports_form_no_circle():
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: imported_modules(path, set(files)) - {name} for name, path in files.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                circle = trail[trail.index(target):] + [target] if target in trail else [name, target]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target, trail + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


#: Where a checkpoint's saved settings may be touched: the one reader, the file loader, and the
#: training task that writes them.
SETTINGS_READERS = {"models/info.py", "models/files.py", "training/task.py"}


def test_checkpoint_settings_are_read_only_through_model_info():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() in SETTINGS_READERS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"\bhparams\b|hyper_parameters|\bexport_metadata\b", line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offenders, "read these through ModelInfo:\n" + "\n".join(offenders)
