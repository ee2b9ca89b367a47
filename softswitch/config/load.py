"""YAML text → validated `Settings`, with every problem reported at once as file:line:column: key: message.

How lines are found: the text is composed into PyYAML's node tree (which keeps each node's position), then
constructed into plain Python data and validated by pydantic. Each pydantic error's `loc`
(`('agents', 1, 'skills', 'billing')`) is walked through the node tree to the deepest node that exists:
the key's own position for a key that is present, the enclosing mapping for a key that is missing.
Problems found by one model-level check are unpacked from `schema.LocatedErrors` so each gets its own key.

All at once: pydantic runs a model's cross-field checks (duplicate numbers, unknown overflow targets, relax
steps ...) only when every field of that model validated, so one misspelt key would hide a duplicate
extension until it was fixed. When validation fails, the loader also runs those same checks on the data
through `schema.cross_field_issues`, which reads each field with its own validation and leaves out what
it cannot read (see the schema module docstring); the two lists are merged without duplicates and
sorted by line. YAML syntax errors stop everything, since there is no data to check.

Also reported: YAML syntax errors (with PyYAML's position), keys repeated in one mapping (PyYAML would
silently keep the last), an empty file or a top level that is not a mapping.

Not here: checks that need the file system (sound files exist and decode, TLS key matches certificate);
the media and transport layers report those at start-up.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from softswitch.config.schema import Loc, LocatedErrors, Settings, cross_field_issues, format_loc

__all__ = ["ConfigError", "ConfigIssue", "load_settings", "parse_settings"]

_SECRET_KEYS = ("password", "ha1_md5", "ha1_sha256")


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file. `line` and `column` are 1-based; None when unknown."""

    file: str
    line: int | None
    column: int | None
    key: str  # key path such as agents[1].skills.billing; "" for the file as a whole
    message: str
    hint: str | None = None  # the description of the field concerned, for `config check`

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; `errors` lists every problem found, in file order."""

    def __init__(self, errors: list[ConfigIssue]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(issue) for issue in errors))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.errors)


def load_settings(path: str | Path) -> Settings:
    """Read and validate a configuration file. Raises ConfigError listing every problem."""
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(filename, None, None, "", f"cannot read: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(filename, None, None, "", f"not UTF-8 text: {exc.reason}")]) from None
    return parse_settings(text, filename)


def parse_settings(text: str, filename: str) -> Settings:
    """Validate configuration text; `filename` is only used in messages. Raises ConfigError."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        except yaml.MarkedYAMLError as exc:
            raise ConfigError([_yaml_issue(filename, exc)]) from None
        except yaml.YAMLError as exc:
            raise ConfigError([ConfigIssue(filename, None, None, "", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()

    if root is None:
        raise ConfigError(
            [ConfigIssue(filename, 1, 1, "", "the file is empty; at least server.domain is required")]
        )
    if not isinstance(data, dict):
        raise ConfigError(
            [_at(filename, root, "", "the top level must be a mapping with server:, agents:, queues: ...")]
        )

    issues = _duplicate_keys(filename, root, ())
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        issues.extend(_validation_issues(filename, root, exc))
        # Pydantic skipped the cross-field checks of every model with an invalid field; run them on the data.
        issues.extend(
            _issue_at(filename, root, loc, message, error_type="located")
            for loc, message in cross_field_issues(data)
        )
        settings = None
    if issues or settings is None:
        issues = list(dict.fromkeys(issues))  # a check that failed alone is found both ways
        issues.sort(key=lambda i: (i.line if i.line is not None else 0, i.column or 0))
        raise ConfigError(issues)
    return settings


# ----------------------------------------------------------------------------------------------------------


def _yaml_issue(filename: str, exc: yaml.MarkedYAMLError) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        problem = f"{problem} ({exc.context} at line {exc.context_mark.line + 1})"
    if "found undefined alias" in problem or "expected alphabetic or numeric character" in problem:
        problem += '; values starting with * or & must be quoted, as in "*11"'
    if mark is None:
        return ConfigIssue(filename, None, None, "", f"YAML syntax error: {problem}")
    return ConfigIssue(filename, mark.line + 1, mark.column + 1, "", f"YAML syntax error: {problem}")


def _at(filename: str, node: Node, key: str, message: str, hint: str | None = None) -> ConfigIssue:
    return ConfigIssue(filename, node.start_mark.line + 1, node.start_mark.column + 1, key, message, hint)


def _duplicate_keys(filename: str, node: Node, loc: Loc) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if isinstance(node, MappingNode):
        seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    first = seen[key_node.value].start_mark.line + 1
                    issues.append(
                        _at(
                            filename,
                            key_node,
                            format_loc((*loc, key_node.value)),
                            f"repeats the key on line {first}",
                        )
                    )
                else:
                    seen[key_node.value] = key_node
                issues.extend(_duplicate_keys(filename, value_node, (*loc, key_node.value)))
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            issues.extend(_duplicate_keys(filename, item, (*loc, i)))
    return issues


def _validation_issues(filename: str, root: Node, exc: ValidationError) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, LocatedErrors):
            for sub_loc, message in cause.issues:
                issues.append(_issue_at(filename, root, (*loc, *sub_loc), message, error_type="located"))
            continue
        issues.append(_issue_at(filename, root, loc, _message(error, loc), error_type=error["type"]))
    return issues


def _issue_at(filename: str, root: Node, loc: Loc, message: str, *, error_type: str = "") -> ConfigIssue:
    node, found = _locate(root, loc)
    key = format_loc(found)
    hint = _description(loc)
    if error_type == "located":
        key = format_loc(loc)
    elif error_type == "missing":
        key = format_loc(loc)
        message = f"missing required key {loc[-1]!r}" if loc else message
    elif error_type == "extra_forbidden" and loc:
        key = format_loc(loc)
        known = _known_keys(loc[:-1])
        message = f"unknown key {loc[-1]!r}"
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        hint = "known keys here: " + ", ".join(known) if known else None
    return _at(filename, node, key, message, hint)


def _message(error: Any, loc: Loc) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if error["type"] in ("missing", "extra_forbidden") or error["type"].startswith(
        ("quoted_string", "value_error")
    ):
        return message
    value = error.get("input")
    secret = any(part in _SECRET_KEYS for part in loc)
    if not secret and isinstance(value, str | int | float | bool) and error["type"] not in _SELF_DESCRIBING:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        message = f"got {shown}: {message[:1].lower()}{message[1:]}"
    return message


# Our own messages already quote the offending value.
_SELF_DESCRIBING = {"pattern", "ha1_format", "host", "listen", "host_port", "port_range", "database_url"}
_SELF_DESCRIBING |= {"timezone", "cidr"}


# ---- walking the YAML node tree


def _locate(root: Node, loc: Loc) -> tuple[Node, Loc]:
    """The node to point at for `loc`, and the part of `loc` that exists in the file."""
    node = root
    mark = root
    found: list[str | int] = []
    for index, part in enumerate(loc):
        if isinstance(node, MappingNode) and part != "[key]":
            entry = _find_key(node, part)
            if entry is None:
                break
            key_node, value_node = entry
            found.append(part)
            mark = key_node
            node = value_node
            if index + 1 < len(loc) and loc[index + 1] == "[key]":
                break
        elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            found.append(part)
            node = node.value[part]
            mark = node
        else:
            break
    return mark, tuple(found)


def _find_key(node: MappingNode, part: str | int) -> tuple[Node, Node] | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == str(part):
            return key_node, value_node
    for key_node, value_node in node.value:  # keys YAML resolved to non-strings: "+371..." → 371...
        if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:str":
            try:
                if yaml.safe_load(key_node.value) == part:
                    return key_node, value_node
            except yaml.YAMLError:
                continue
    for key_node, value_node in node.value:  # merge keys: <<: *defaults
        if isinstance(key_node, ScalarNode) and key_node.value == "<<":
            merged = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in merged:
                if isinstance(source, MappingNode) and (entry := _find_key(source, part)) is not None:
                    return entry
    return None


# ---- walking the pydantic models for descriptions and known keys


def _strip(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _walk_fields(loc: Loc) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model class reached at the end of `loc` (if any) and the last field passed through."""
    annotation: Any = Settings
    field: FieldInfo | None = None
    for part in loc:
        annotation = _strip(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not isinstance(part, str) or part not in annotation.model_fields:
                return None, field
            field = annotation.model_fields[part]
            annotation = field.annotation
        elif origin in (tuple, list) and isinstance(part, int):
            annotation = typing.get_args(annotation)[0]
        elif origin is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return None, field
    annotation = _strip(annotation)
    model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model, field


def _description(loc: Loc) -> str | None:
    _, field = _walk_fields(loc)
    return field.description if field is not None else None


def _known_keys(loc: Loc) -> list[str]:
    model, _ = _walk_fields(loc)
    return list(model.model_fields) if model is not None else []
