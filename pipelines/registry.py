"""Finding stage classes by type name (``normalize``) or by ``module:Class`` (user plugins), and
``curate`` subcommands that live with their feature.

Both are Python entry points, read from package metadata without importing anything:
``curate.stages`` (type name -> ``module:Class``) and ``curate.commands`` (command name ->
``module:click_command``). curate's own are declared in its pyproject.toml; another package can
add stages or commands by declaring entry points in these groups. Resolving one name imports
only that stage's module, so ``curate run`` never imports a web app or a GPU engine it does not
use. Stage modules import heavy dependencies (models, NLP libraries) in ``setup()``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .errors import ConfigError
from .stage import Stage

STAGES_GROUP = "curate.stages"
COMMANDS_GROUP = "curate.commands"


@cache
def stage_entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=STAGES_GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            raise RuntimeError(f"two stages are named {ep.name!r}: {found[ep.name].value} and {ep.value}")
        found[ep.name] = ep
    return found


def command_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}


def _load_stage(name: str, ep: EntryPoint) -> type[Stage[Any]]:
    obj = ep.load()
    if not (inspect.isclass(obj) and issubclass(obj, Stage)):
        raise ConfigError(f"entry point {name!r} ({ep.value}) is not a curate Stage subclass")
    if obj.name != name:
        raise ConfigError(f"entry point {name!r} ({ep.value}) names a stage called {obj.name!r}")
    return obj


def builtin_stages() -> dict[str, type[Stage[Any]]]:
    """Every registered stage (imports every stage module: for ``curate stages`` only)."""
    return {name: _load_stage(name, ep) for name, ep in sorted(stage_entry_points().items())}


def resolve_stage(type_name: str) -> type[Stage[Any]]:
    """Return the stage class for a YAML type name or ``package.module:Class``."""
    if ":" in type_name:
        module_name, _, attr = type_name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"cannot import module {module_name!r} for stage {type_name!r}: {exc}",
                hint="a plugin stage must be importable: put its module on PYTHONPATH or next to the pipeline file",
            ) from exc
        obj = getattr(module, attr, None)
        if obj is None:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r} (stage {type_name!r})")
        if not (inspect.isclass(obj) and issubclass(obj, Stage)):
            raise ConfigError(f"{type_name!r} is not a curate Stage subclass")
        return obj
    eps = stage_entry_points()
    if type_name in eps:
        return _load_stage(type_name, eps[type_name])
    close = difflib.get_close_matches(type_name, eps, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "run `curate stages` to list them"
    raise ConfigError(f"unknown stage type {type_name!r}; known stages: {', '.join(sorted(eps))}", hint=hint)
