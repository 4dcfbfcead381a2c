"""The environment Great Expectations is imported and run in (no usage statistics), apart from
the modules that use it so that none of them imports another for it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def ge_environment() -> Iterator[None]:
    """``GX_ANALYTICS_ENABLED=False`` while Great Expectations is imported or a context is made
    (no usage statistics), restored afterwards: ``curate.run`` leaves its caller's environment
    as it was."""
    saved = os.environ.get("GX_ANALYTICS_ENABLED")
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("GX_ANALYTICS_ENABLED", None)
        else:
            os.environ["GX_ANALYTICS_ENABLED"] = saved
