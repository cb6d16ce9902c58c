"""The package's shape: stage commands -> library roles -> core, front ends (apps/) on top, and modules stay small."""

import ast
import io
import re
import tokenize

import pytest

from helpers import REPO
from imports import PACKAGE, STAGES, imported_modules

# Each role may import the roles of a lower rank (and its own folder), never one of its rank or above:
# imports run one way, and a change reaches only what sits above it.
RANKS = {
    "errors": 0,
    "runtime": 0,  # copied onto machines without this package: it imports none of it
    "core": 1,  # pure: no settings, no file I/O
    "config": 1,
    "command": 2,
    "store": 2,
    "datasets": 3,
    "backbones": 4,
    "engines": 5,
    "model": 6,
    "export": 6,
    "benchmarks": 7,  # a benchmark's own outputs from deployed models (MVTec AD 2's submission folder)
    "pipeline": 6,
    "stages": 7,  # the stage commands dvc.yaml runs
    "apps/service": 8,
    "apps/reports": 8,
    "apps": 9,  # the CLI and the other front ends: predict, serve, feedback, gate, catalog
}
FILES = sorted(p for root in (PACKAGE, STAGES) for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _role(dotted: str) -> str:
    parts = dotted.split(".")
    if parts[0] == "stages":
        return "stages"
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return "package"
    if parts[1] == "apps" and len(parts) > 2 and parts[2] in ("service", "reports"):
        return f"apps/{parts[2]}"
    return parts[1]


def _dotted(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_imports_never_point_back_up(path):
    here = _role(_dotted(path))
    if here == "package":
        return  # patchcore/__init__.py is empty; __main__.py is the CLI's entry
    for module in imported_modules(path):
        there = _role(module)
        if there == "package" or there == here:
            continue
        if here == "runtime":
            pytest.fail(
                f"{path}: the copyable runtime imports {module}; it may import only numpy, Pillow and onnxruntime"
            )
        assert RANKS[there] < RANKS[here], (
            f"{path} ({here}) imports {module} ({there}), a role not below it: imports run down only"
        )


def test_the_cli_reaches_the_stage_commands_by_name_only():
    # the CLI runs a stage command by importing stages.<name> when it is called, so no stage's
    # code is loaded by another command and the library never imports the stage commands
    cli = (PACKAGE / "apps" / "cli.py").read_text()
    named = set(re.search(r"STAGES = \(([^)]*)\)", cli).group(1).replace('"', "").replace(" ", "").split(",")) - {""}
    assert named == {p.stem for p in STAGES.glob("*.py")} - {"__init__"}
    for path in FILES:
        assert not any(m.startswith("stages") for m in imported_modules(path)) or path.is_relative_to(STAGES), path


def _long_functions(tree: ast.AST) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            compiled = any("njit" in ast.unparse(d) or "jit" in ast.unparse(d) for d in node.decorator_list)
            length = node.end_lineno - node.lineno + 1
            if length > 55 and not compiled:
                found.append((node.name, length))
    return found


# the copyable runtime is one file to put beside a program (numpy, Pillow, onnxruntime): split, it would be a
# package to install; it holds the decision geometry (crop box, map-back, regions, normalised score) the pipeline
# imports, so it is the one definition; with the input geometries (views, tiles, the stitch) it holds more
ONE_FILE = {"patchcore/runtime/patchcore_onnx.py": 470}
LINE = 120  # characters of code; a long message string may run on (it stays whole for grep)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_modules_and_functions_stay_small(path):
    lines = path.read_text().count("\n")
    limit = ONE_FILE.get(path.relative_to(REPO).as_posix(), 260)
    assert lines <= limit, f"{path}: {lines} lines; split it by what it holds"
    assert not _long_functions(ast.parse(path.read_text())), (
        f"{path}: functions over ~50 lines: {_long_functions(ast.parse(path.read_text()))}"
    )


def _long_lines(path) -> list[int]:
    """Lines over LINE characters outside a message string (a docstring counts as code: it wraps)."""
    source = path.read_text()
    tree = ast.parse(source)
    docstrings = {
        node.body[0].lineno
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and ast.get_docstring(node)
    }
    kinds = (tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING))
    strings = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in kinds and token.start[0] not in docstrings:
            strings.update(range(token.start[0], token.end[0] + 1))
    return [i for i, line in enumerate(source.split("\n"), 1) if len(line) > LINE and i not in strings]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_packed_lines(path):
    assert not _long_lines(path), (
        f"{path}: lines {_long_lines(path)} are over {LINE} characters; wrap them (ruff format)"
    )
