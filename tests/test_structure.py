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
            if re.search(r"\bhparams\b|hyper_parameters|\bexport_metadata\b|\bmetadata\[|\[\"evaluation\"\]|"
                         r"\[\"input_size\"\]|\[\"rock_classes\"\]", line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offenders, "read these through ModelInfo:\n" + "\n".join(offenders)


def test_packages_import_one_way_along_the_pipeline():
    """Package by package (lazy imports inside functions included), nothing imports back up the
    pipeline: e.g. io never needs catalog, geometry never needs io."""
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    graph: dict[str, set[str]] = {name: set() for name in packages}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) < 2:
            continue  # the top-level shared modules and the API
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rockdet."):
                target = node.module.split(".")[1]
                if target in packages and target != parts[0]:
                    graph[parts[0]].add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and not seen.add(n) and reaches(n, goal, seen)) for n in graph[start])

    circles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a, set()))
    assert not circles, f"packages importing each other: {circles}"
