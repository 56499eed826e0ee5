"""YAML -> DeploymentSpec, with errors that point at the file, line and key.

PyYAML's SafeLoader builds the data; its node tree (`yaml.compose`) gives the line
of every key and list item, so a pydantic error location such as
`("models", 0, "parallelism", "tensor")` becomes `demo.yaml:9 models[0].parallelism.tensor`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from shardline.errors import SpecError
from shardline.spec.deployment import DeploymentSpec

Loc = tuple[str | int, ...]


def load_spec(path: str | Path) -> DeploymentSpec:
    """Read and validate a YAML spec; raise SpecError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec: {exc.strerror}") from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, source: str = "<spec>") -> DeploymentSpec:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from None
    if root is None:
        raise SpecError(f"{source}: the spec is empty")
    lines: dict[Loc, int] = {}
    _index_lines(root, (), lines, source)
    data = yaml.safe_load(text)
    return validate_spec(data, source=source, lines=lines)


def validate_spec(data: Any, source: str = "<spec>", lines: dict[Loc, int] | None = None) -> DeploymentSpec:
    """Validate already-parsed data (e.g. a Helm value or a Serve config field)."""
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as exc:
        errors = _without_echoes(exc.errors())
        problems = [_describe(err, source, lines or {}) for err in errors]
        noun = "problem" if len(problems) == 1 else "problems"
        raise SpecError(
            f"{source}: invalid deployment spec ({len(problems)} {noun}):\n  " + "\n  ".join(problems)
        ) from None


def _index_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], source: str) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                line = key_node.start_mark.line + 1
                raise SpecError(f"{source}:{line} {_dotted(loc + (key,))}: key appears twice")
            seen.add(key)
            _index_lines(value_node, loc + (key,), lines, source)
            lines[loc + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, loc + (i,), lines, source)


def _without_echoes(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A tuple whose items all failed also reports "too short": noise next to the cause.
    def echoes(err: dict[str, Any]) -> bool:
        loc = err["loc"]
        return err["type"] == "too_short" and any(
            other["loc"][: len(loc)] == loc and len(other["loc"]) > len(loc) for other in errors
        )

    return [err for err in errors if not echoes(err)]


def _describe(err: dict[str, Any], source: str, lines: dict[Loc, int]) -> str:
    loc = _clean_loc(err["loc"])
    where = _nearest_line(loc, lines)
    prefix = f"{source}:{where}" if where else source
    return f"{prefix} {_dotted(loc) or '(top level)'}: {_message(err, loc)}"


def _message(err: dict[str, Any], loc: Loc) -> str:
    kind, msg, value = err["type"], err["msg"], err.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"unknown key '{loc[-1]}'{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{msg} (got {value!r})"


_VALIDATOR_STEP = re.compile(r"^[a-z][a-z-]*\[.*\]$")


def _clean_loc(loc: tuple[Any, ...]) -> Loc:
    # pydantic inserts the validator kind ("function-after[...]") into some
    # locations; a user's key (even one with brackets) stays.
    return tuple(p for p in loc if not (isinstance(p, str) and _VALIDATOR_STEP.match(p)))


def _nearest_line(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(loc: Loc) -> list[str]:
    """Field names of the model found at `loc`, for 'unknown key' hints."""
    model: type[BaseModel] | None = DeploymentSpec
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = _model_of(field.annotation) if field else None
    return list(model.model_fields) if model else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found:
            return found
    return None
