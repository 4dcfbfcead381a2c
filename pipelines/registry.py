"""Finding stage classes by type name (``normalize``) or by ``module:Class`` (user plugins).

Built-in stages are discovered by scanning the modules of curate's stage packages for
:class:`~curate.pipelines.stage.Stage` subclasses with a ``name``: adding a stage is adding one
module (plus its test). Stage modules must import heavy dependencies (models, NLP libraries)
inside ``setup()``, not at import time, so that discovery stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from functools import cache

from .errors import ConfigError
from .stage import Stage

STAGE_PACKAGES = (
    "curate.pipelines.stages",
    "curate.filters",
    "curate.synth",
    "curate.annotation",
)


@cache
def builtin_stages() -> dict[str, type[Stage]]:
    found: dict[str, type[Stage]] = {}
    for package_name in STAGE_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package_name}.{info.name}")
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if (
                    issubclass(obj, Stage)
                    and obj.__module__ == module.__name__
                    and obj.name
                    and not inspect.isabstract(obj)
                ):
                    if obj.name in found and found[obj.name] is not obj:
                        raise RuntimeError(
                            f"two stages are named {obj.name!r}: "
                            f"{found[obj.name].__module__} and {obj.__module__}"
                        )
                    found[obj.name] = obj
    return found


def resolve_stage(type_name: str) -> type[Stage]:
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
    stages = builtin_stages()
    if type_name in stages:
        return stages[type_name]
    close = difflib.get_close_matches(type_name, stages, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "run `curate stages` to list them"
    raise ConfigError(
        f"unknown stage type {type_name!r}; known stages: {', '.join(sorted(stages))}", hint=hint
    )
