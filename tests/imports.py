"""The project files a stage command runs: the import closure of its module stages/<name>.py in the project's
packages."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "patchcore"  # the library
STAGES = REPO / "stages"  # the stage commands dvc.yaml runs
PACKAGES = ("patchcore", "stages")


def _module_file(dotted: str) -> Path | None:
    """patchcore.core.features -> patchcore/core/features.py (or the package's __init__.py)."""
    parts = dotted.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(path: Path) -> str:
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(path: Path, nodes: list[ast.stmt] | None = None) -> set[str]:
    """Dotted names of the project modules that the given statements (default: all of the file) import."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(ast.Module(body=nodes if nodes is not None else tree.body, type_ignores=[])):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in PACKAGES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] not in PACKAGES:
                continue
            found.add(module)
            # "from pkg import sub" imports the submodule when there is one
            found.update(f"{module}.{a.name}" for a in node.names if _module_file(f"{module}.{a.name}") is not None)
    return found


def _with_parents(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(roots: set[str]) -> set[Path]:
    """Every file the roots import, directly or not, with the __init__.py of every package on the way."""
    seen: set[Path] = set()
    todo = [name for root in roots for name in _with_parents(root)]
    while todo:
        file = _module_file(todo.pop())
        if file is None or file in seen:
            continue
        seen.add(file)
        todo.extend(name for m in imported_modules(file) for name in _with_parents(m))
    return seen


def command_closure(stage: str) -> set[str]:
    """Files run by ``python -m stages.<stage>``: its module's imports, direct or not, lazy ones included."""
    if not (STAGES / f"{stage}.py").is_file():
        raise KeyError(f"no stage command stages/{stage}.py")
    return {f.relative_to(REPO).as_posix() for f in closure({f"stages.{stage}"})}


STAGE_COMMANDS = ("download", "extract", "coreset", "evaluate", "export", "summarize")


def reach_table() -> str:
    """Markdown: which stage commands run each library folder (and each core module): the stages a change reruns."""
    closures = {stage: command_closure(stage) for stage in STAGE_COMMANDS}
    units: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(REPO).as_posix()
        parts = rel.split("/")
        folder = (
            rel
            if len(parts) == 2
            else "/".join(parts[:3] if parts[1] == "apps" and len(parts) > 3 else parts[:2]) + "/"
        )
        units.setdefault(folder, []).append(rel)
        if parts[1] == "core" and parts[-1] != "__init__.py":
            units.setdefault(rel, []).append(rel)
    rows = ["| library | stages it reaches |", "|---|---|"]
    for unit, files in units.items():
        reached = [s for s in STAGE_COMMANDS if closures[s] & set(files)]
        rows.append(f"| `{unit.removeprefix('patchcore/')}` | {', '.join(reached) if reached else 'none'} |")
    return "\n".join(rows)
