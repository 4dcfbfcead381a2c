"""Failures as a user should read them: an exception from the driver or from a Ray task (which
reaches the driver pickled, its cause cut, its message wrapped in Ray's advice and colour codes)
turned back into curate's own error where there is one, or into a one-line ``what`` and ``where``."""

from __future__ import annotations

import os
import re

from .errors import CurateError

#: terminal control sequences, and Ray's colour codes around a task name whose ESC was lost
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\[\d{1,2}m(?=ray::)|(?<=\(\))\[\d{1,2}m")
#: lines Ray Data adds to a task's error: advice about its retry settings, not about the failure
_RAY_ADVICE = ("To change retry attempts", "Failed to apply UDF transform", "if you believe this to be transient")


def clean_text(text: str) -> str:
    """An error text as a user should read it: no terminal colour codes, none of Ray's retry
    advice, no blank lines (the rest is kept whole: never cut to one line)."""
    lines = []
    for line in _ANSI.sub("", text).splitlines():
        if line.strip().startswith(_RAY_ADVICE):
            continue
        if line.strip():
            lines.append(line.rstrip())
    return "\n".join(lines)


_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)', re.M)
_RAISED = re.compile(r"^((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit|Warning)?)(?:\(\w+\))?: (.*)$")


def describe_failure(exc: BaseException) -> tuple[str, str | None]:
    """``(what, where)`` of an unexpected failure, for the one-line report: the innermost error's
    type and whole message (from the remote traceback when a Ray task raised it), and the file,
    line and function that raised it, if known."""
    found = _follow(exc)
    texts = [clean_text(str(e)) for e in _chain(exc)]
    frames = [m for t in texts for m in _FRAME.finditer(t)]
    where = None
    if frames:
        path, line, func = frames[-1].groups()
        where = f"{_short_path(path)}:{line} in {func}"
    elif found.__traceback__ is not None:  # raised here, in the driver
        import traceback

        last = traceback.extract_tb(found.__traceback__)[-1]
        where = f"{_short_path(last.filename)}:{last.lineno} in {last.name}"
    message = clean_text(str(found))
    name = type(found).__name__
    if type(found).__module__.startswith("ray.") or _FRAME.search(message):
        # Ray's wrapper (UserCodeException, RayTaskError): the real error is the last one raised
        # in the remote traceback text
        remote = _remote_error(texts)
        if remote is not None:
            name, message = remote
    return f"{name}: {message}" if message else name, where


def _remote_error(texts: list[str]) -> tuple[str, str] | None:
    """The last exception line of a traceback in ``texts`` that is not Ray's own (with the lines
    of its message that follow it)."""
    found = None
    for text in texts:
        lines = text.splitlines()
        for i, line in enumerate(lines):
            m = _RAISED.match(line)
            if not m or m.group(1).startswith("ray.") or i == 0 or not lines[i - 1].startswith((" ", "\t")):
                continue
            message = [m.group(2)]
            for more in lines[i + 1 :]:
                if more.startswith(("The above exception", "During handling", "Traceback", "ray::")) or _FRAME.match(more):
                    break
                message.append(more.strip())
            found = (m.group(1).rsplit(".", 1)[-1], " ".join(message).strip())
    return found


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "/pipelines/", "/filters/", "/synth/", "/annotation/"):
        if marker in path:
            return (marker.strip("/") + "/" if marker != "site-packages/" else "") + path.split(marker, 1)[1]
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else path


def unwrap(exc: BaseException) -> BaseException:
    """The user-facing error inside a Ray task failure, if there is one.

    Ray Data wraps an exception raised in a task in ``UserCodeException``, which reaches the
    driver pickled, without its ``__cause__``; the remote traceback text still names curate's
    error (and its hint, on the next line), so it is rebuilt from there when the chain is cut."""
    found = _follow(exc)
    if isinstance(found, CurateError):
        return found
    from . import errors

    text = "\n".join(clean_text(str(e)) for e in _chain(exc))
    matches = re.findall(r"curate\.pipelines\.errors\.(\w+Error): (.+)((?:\n  hint: .+)?)", text)
    if matches:
        name, message, hint = matches[-1]
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, CurateError):
            hint = hint.partition("  hint: ")[2].strip() or None
            if "\n  hint: " in message:
                message, _, hint = message.partition("\n  hint: ")
            return cls(message.strip(), hint)
    return found


def _chain(exc: BaseException) -> list[BaseException]:
    out = [exc]
    for _ in range(10):
        nxt = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(nxt, BaseException) or nxt in out:
            break
        out.append(nxt)
        exc = nxt
    return out


def _follow(exc: BaseException) -> BaseException:
    for _ in range(10):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException) and cause is not exc:
            exc = cause
            continue
        if exc.__cause__ is not None and not isinstance(exc, CurateError):
            exc = exc.__cause__
            continue
        break
    return exc


#: known Ray failures: what happened and what to do, in curate's words
_ADVICE = (
    ("Failed to startup worker", "Ray could not start a worker process in time (a loaded machine, or too little memory): "
     "run again when the machine is less busy, give Ray fewer CPUs (ray.num_cpus: it starts fewer workers), or raise "
     "RAY_worker_register_timeout_seconds (curate sets 180 for a local Ray); the run resumes where it stopped"),
)


def advice_for(what: str) -> str | None:
    """What to do about a failure curate recognises (None: nothing known)."""
    return next((advice for needle, advice in _ADVICE if needle in what), None)
