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


class ConfigError(CurateError):
    """The pipeline file is invalid: nothing was run and nothing written (exit 2)."""

    exit_code = 2


class InputDataError(CurateError):
    """Input data could not be read (malformed line, bad encoding) under ``on_error: fail`` (exit 3)."""

    exit_code = 3


class DatasetError(CurateError):
    """A dataset (Delta table) is missing or unreadable (exit 4)."""

    exit_code = 4
