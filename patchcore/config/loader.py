"""Reading params.yaml into typed settings; every problem becomes one line naming the key."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from patchcore.config.settings import Params
from patchcore.errors import UsageError

DEFAULT_PARAMS = Path("params.yaml")
M = TypeVar("M", bound=BaseModel)


# A params.yaml is a few hundred values; aliases that expand a document past this are a YAML bomb
MAX_NODES = 100_000
MAX_DIGITS = 40  # the largest bound of any setting has 13


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes ``node`` becomes once every alias is expanded (shared nodes counted each time)."""
    if id(node) not in memo:
        memo[id(node)] = 0  # a recursive alias counts as nothing more, and ends the recursion
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        memo[id(node)] = min(MAX_NODES + 1, 1 + sum(_expanded_size(c, memo) for c in children))
    return memo[id(node)]


def _strict_yaml(text: str, path: Path) -> object:
    """safe_load, refusing what DVC refuses (a key given twice in one mapping) and alias bombs."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_NODES:
            raise UsageError(
                f"{path}: its aliases expand to more than {MAX_NODES} values; write the values out instead of nesting aliases"
            )
        for each in _nodes(node, set()):
            # int() of a huge literal is refused by Python (over 4300 digits) after it took the time
            if isinstance(each, yaml.ScalarNode) and each.tag.endswith(":int") and len(each.value) > MAX_DIGITS:
                raise UsageError(
                    f"{path}: line {each.start_mark.line + 1} holds a number of {len(each.value)} digits; no setting takes more than {MAX_DIGITS}"
                )
            if not isinstance(each, yaml.MappingNode):
                continue
            seen: dict[object, int] = {}
            for key, _ in each.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise UsageError(
                            f"{path}: key '{key.value[:80]}' appears twice in one mapping (lines {seen[key.value]} and {key.start_mark.line + 1}); keep one"
                        )
                    seen[key.value] = key.start_mark.line + 1
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _nodes(node: yaml.Node, done: set[int]):
    """Every node of the document once (an alias's target is visited once)."""
    if id(node) in done:
        return
    done.add(id(node))
    yield node
    if isinstance(node, yaml.MappingNode):
        for pair in node.value:
            for child in pair:
                yield from _nodes(child, done)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            yield from _nodes(child, done)


def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: params file not found; run from the project root or pass --params PATH")
    try:
        data = _strict_yaml(path.read_text(), path)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc.__class__.__name__}); fix the file") from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to read (hundreds of levels); params.yaml needs a few") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it ({exc.__class__.__name__}); check the file") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of stage names to settings")
    return data


def load(path: Path = DEFAULT_PARAMS) -> Params:
    """params.yaml as validated, frozen settings (loaded once per command)."""
    return validate(Params, read_yaml(path), Path(path).name)


def validate(model: type[M], data: object, where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UsageError(describe(model, exc, where)) from None


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys a model accepts at ``loc``; the user-chosen keys of keyed sections (download:, backbones:) are stepped
    over."""
    current: object = model
    parts = iter(loc)
    for part in parts:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
        args: tuple = getattr(current, "__args__", ())
        if getattr(current, "__origin__", None) is dict and len(args) == 2:
            current = args[-1]  # dict[Name, Model]: the next part is the entry's name, not a field
            next(parts, None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [k for k in current.model_fields if k != "name"]
    return []


def describe(model: type[BaseModel], exc: ValidationError, where: str) -> str:
    """The first validation error as one line: the dotted key, what is wrong and the fix."""
    error = exc.errors(include_url=False)[0]
    # pydantic adds markers of its own to the location; the user knows only the keys
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]")))
    dotted = ".".join(str(p) for p in loc)
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(known)}"
        return f"{where}: unknown key '{dotted}'; {hint}"
    if kind == "missing" and loc and isinstance(loc[-1], int):
        return f"{where}: '{'.'.join(str(p) for p in loc[:-1])}' has too few items"
    if kind == "missing":
        return f"{where}: missing '{dotted}'; see the README for its keys"
    if not loc:
        return f"{where}: {message}"
    if kind in ("value_error", "assertion_error"):
        return f"{where}: '{dotted}' {message}" if message.startswith("must") else f"{where}: '{dotted}': {message}"
    got = repr(error.get("input"))
    return f"{where}: '{dotted}': {message.lower()}, got {got if len(got) <= 80 else got[:77] + '...'}"
