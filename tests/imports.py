"""The project files a command runs: the import closure of its stage module inside stages/."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "stages"


def _module_file(dotted: str) -> Path | None:
    """stages.core.features -> stages/core/features.py (or the package's __init__.py)."""
    parts = dotted.split(".")
    if parts[0] != "stages":
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
            found.update(a.name for a in node.names if a.name.split(".")[0] == "stages")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "stages":
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


def command_closure(command: str) -> set[str]:
    """Files run by `patchcore <command>`: cli.py's module-level imports plus that command's own."""
    cli = PACKAGE / "cli.py"
    tree = ast.parse(cli.read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    roots = {"stages.cli"} | imported_modules(cli, top)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and _command_name(node) == command:
            roots |= imported_modules(cli, node.body)
            break
    else:
        raise KeyError(f"no command '{command}' in stages/cli.py")
    files = closure(roots - {"stages.cli"}) | {cli} | closure({"stages"})
    return {f.relative_to(REPO).as_posix() for f in files}


def _command_name(node: ast.FunctionDef) -> str | None:
    for deco in node.decorator_list:
        if isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "command":
            return deco.args[0].value if deco.args and isinstance(deco.args[0], ast.Constant) else node.name
    return None
