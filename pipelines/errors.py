"""Errors with a user-facing message and the exit code ``curate`` ends with."""

from __future__ import annotations


class CurateError(Exception):
    """Base of every error curate reports to a user (never shown with a traceback)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"

    def __reduce__(self) -> tuple[object, ...]:
        # errors raised in Ray workers travel pickled: keep the hint
        return (type(self), (self.message, self.hint))


class ConfigError(CurateError):
    """The pipeline file is invalid: nothing was run and nothing written (exit 2)."""

    exit_code = 2


class InputDataError(CurateError):
    """Input data could not be read (malformed line, bad encoding) under ``on_error: fail`` (exit 3)."""

    exit_code = 3


class DatasetError(CurateError):
    """A dataset (Delta table) is missing or unreadable (exit 4)."""

    exit_code = 4


class StageError(CurateError):
    """A stage raised inside a worker: the run failed and published nothing (exit 1)."""

    exit_code = 1


class ConcurrentWriteError(DatasetError):
    """Another run committed to the dataset while this one was committing: this run published nothing (exit 4)."""

    def __init__(self, message: str, hint: str | None = None, *, version: int | None = None) -> None:
        super().__init__(message, hint)
        self.version = version  # the version the other run committed

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.hint), dict(self.__dict__))  # keeps version when pickled


class RunKeyCommittedError(DatasetError):
    """The run key was already committed to the dataset: this run published nothing, and that is
    not a failure (exit 0); ``version`` is the version that committed the key."""

    exit_code = 0

    def __init__(self, message: str, hint: str | None = None, *, run_key: str | None = None, version: int | None = None) -> None:
        super().__init__(message, hint)
        self.run_key = run_key
        self.version = version

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.hint), dict(self.__dict__))  # keeps run_key, version



class ExpectationsFailedError(CurateError):
    """The publish gate failed: the staged output broke at least one critical expectation, so
    nothing was published (exit 5). ``summary`` is the gate's result (each expectation, its
    success and observed value); ``reports`` the JSON and Data Docs HTML files written."""

    exit_code = 5

    def __init__(self, message: str, hint: str | None = None, *, summary: dict[str, object] | None = None,
                 reports: list[str] | None = None) -> None:
        super().__init__(message, hint)
        self.summary = summary or {}
        self.reports = reports or []

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.hint), dict(self.__dict__))  # keeps summary, reports


class TransientFailureError(CurateError):
    """Too many rows failed for a transient reason (an engine or the network is down): the run
    published nothing; its rows are retried by the next run (exit 6). Another try may succeed."""

    exit_code = 6


class RunStalledError(CurateError):
    """The run made no progress for ``run.stall_timeout`` seconds and was stopped; nothing was
    published (exit 1). Another try may succeed (resources freed, a service answering again)."""

    exit_code = 1


def combine_errors(problems: list[ConfigError]) -> ConfigError:
    """One error reporting every problem: each on its own line (``curate`` prints ``error:``
    before each), each hint under its problem."""
    if len(problems) == 1:
        return problems[0]
    lines = []
    for p in problems:
        lines.append(p.message)
        if p.hint:
            lines.append(f"  hint: {p.hint}")
    return ConfigError("\n".join(lines))
