"""Reading YAML safely: ``safe_load`` semantics, duplicate keys rejected with their line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from crystallize.errors import ConfigError

__all__ = ["read_yaml"]


def _check_duplicates(node: yaml.Node, path: Path, where: str) -> None:
    """Walk the composed node tree (iteratively) looking for a mapping key given twice."""
    stack: list[tuple[yaml.Node, str]] = [(node, where)]
    while stack:
        current, at = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in current.value:
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key in seen:
                    full = f"{at}.{key}" if at else str(key)
                    raise ConfigError(f"duplicate key (line {line}; first on line {seen[key]})", path=path, key=full)
                seen[key] = line
                stack.append((value_node, f"{at}.{key}" if at else str(key)))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, f"{at}[{i}]") for i, item in enumerate(current.value))


def read_yaml(path: Path) -> Any:
    """Parse ``path`` with ``yaml.safe_load``, after rejecting duplicate keys.

    Raises
    ------
    ConfigError
        For unreadable files, YAML syntax errors (with line) and duplicate keys.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_duplicates(node, path, "")
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"invalid YAML{line}: {exc.problem}", path=path) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=path) from exc
