"""Loading YAML while remembering where each value came from (file, line, column).

Values are plain Python objects; :class:`Located` maps a key path such as
``("stages", 1, "length_filter", "min_chars")`` to its line in the file, so that validation
errors point at the line to fix. Environment variables are interpolated in string scalars:
``${VAR}`` and ``${VAR:-default}``; ``$$`` is a literal ``$``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

Key = tuple[str | int, ...]

_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclasses.dataclass
class Located:
    """A parsed YAML document and the line (1-based) of every key path in it."""

    path: str
    data: Any
    lines: dict[Key, int]

    def line_of(self, key: Key) -> int | None:
        """The line of ``key``, or of its nearest parent that has one."""
        while True:
            if key in self.lines:
                return self.lines[key]
            if not key:
                return None
            key = key[:-1]

    def where(self, key: Key) -> str:
        line = self.line_of(key)
        return f"{self.path}:{line}" if line else self.path


def format_key(key: Key) -> str:
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_yaml(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Located:
    path = str(path)
    env = os.environ if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"pipeline file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}") from None
    lines: dict[Key, int] = {}
    if node is None:
        raise ConfigError(f"{path}: the file is empty", hint="see `curate run --help` for a minimal pipeline")
    data = _convert(node, (), lines, path, env)
    return Located(path, data, lines)


def _convert(node: yaml.Node, key: Key, lines: dict[Key, int], path: str, env: Mapping[str, str]) -> Any:
    lines.setdefault(key, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            k = _scalar(knode)
            if k in out:
                raise ConfigError(f"{path}:{knode.start_mark.line + 1}: {format_key(key + (k,))} is given twice")
            lines[key + (k,)] = knode.start_mark.line + 1
            out[k] = _convert(vnode, key + (k,), lines, path, env)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, key + (i,), lines, path, env) for i, item in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, str) and "$" in value:
        value = _interpolate(value, key, node.start_mark.line + 1, path, env)
        if node.style is None:  # plain scalar: ${N} may give an int, float, bool or null, never YAML
            value = _plain_value(value)
    return value


_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null")}


def _plain_value(value: str) -> Any:
    """An interpolated value is a literal string, unless the whole of it reads as a number, a
    boolean or null (``${WORKERS}`` -> 4): a ``#`` or ``: `` in it is never YAML syntax."""
    loader = yaml.SafeLoader("")
    try:
        tag = loader.resolve(yaml.ScalarNode, value, (True, False))
    finally:
        loader.dispose()
    return _scalar(yaml.ScalarNode(tag, value)) if tag in _PLAIN_TAGS else value


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _interpolate(value: str, key: Key, line: int, path: str, env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{path}:{line}: {format_key(key)}: environment variable {name} is not set",
            hint=f"export {name}=... or write ${{{name}:-default}}",
        )

    return _ENV.sub(sub, value)
