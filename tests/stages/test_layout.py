"""The package's shape: imports run stage modules -> library roles -> core, and modules stay small."""

import ast

import pytest

from helpers import REPO
from imports import PACKAGE, imported_modules

ROLES = ("config", "backbones", "datasets", "store", "engines", "export", "runtime", "service")
STAGE_MODULES = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__", "errors"}
FILES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _layer(dotted: str) -> str:
    parts = dotted.split(".")
    if len(parts) == 1 or parts[1] == "errors":
        return "base"
    return parts[1] if parts[1] in ROLES + ("core",) else "stage"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_imports_never_point_back_up(path):
    rel = path.relative_to(PACKAGE).parts
    here = rel[0] if len(rel) > 1 else ("base" if path.stem in ("__init__", "errors") else "stage")
    for module in imported_modules(path):
        there = _layer(module)
        if here == "core":
            # errors.py is the base every layer may raise from (a GPU asked for where there is none)
            assert there in ("core", "base"), f"{path}: core imports {module}; core is pure (no settings, no file I/O)"
        elif here == "config":
            assert there in ("config", "base"), f"{path}: config imports {module}"
        elif here == "runtime":
            # runtime/patchcore_onnx.py is copied onto machines without this package
            pytest.fail(f"{path}: the copyable runtime imports {module}; it may import only numpy, Pillow and onnxruntime")
        elif here in ROLES:
            assert there != "stage", f"{path}: a library role imports the stage module {module}"
            # export builds on the library roles; only stage modules (and the CLI) reach it
            assert there != "export" or here == "export", f"{path}: the library role {here} imports {module}"
            # the service is a front end like the CLI: only its stage modules (serve, feedback) reach it
            assert there != "service" or here == "service", f"{path}: the library role {here} imports {module}"
        if module.startswith("stages.reports") and here != "reports":
            # reports read what the pipeline wrote, through DVC; only the CLI reaches them
            assert path == PACKAGE / "cli.py", f"{path}: imports {module}; only cli.py may use stages/reports/"


def _long_functions(tree: ast.AST) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            compiled = any("njit" in ast.unparse(d) or "jit" in ast.unparse(d) for d in node.decorator_list)
            length = node.end_lineno - node.lineno + 1
            if length > 55 and not compiled:
                found.append((node.name, length))
    return found


# the copyable runtime is one file to put beside a program (numpy, Pillow, onnxruntime): split, it would be a package to install
ONE_FILE = {"stages/runtime/patchcore_onnx.py": 300}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_modules_and_functions_stay_small(path):
    lines = path.read_text().count("\n")
    limit = ONE_FILE.get(path.relative_to(REPO).as_posix(), 260)
    assert lines <= limit, f"{path}: {lines} lines; split it by what it holds"
    assert not _long_functions(ast.parse(path.read_text())), f"{path}: functions over ~50 lines: {_long_functions(ast.parse(path.read_text()))}"


def test_every_stage_module_has_a_command():
    cli = (PACKAGE / "cli.py").read_text()
    for name in STAGE_MODULES - {"cli"}:
        assert f"from . import {name}" in cli, f"stages/{name}.py is not reached from the CLI"
