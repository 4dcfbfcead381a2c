"""Every CLI command has help; errors are short and have the documented exit codes."""

from __future__ import annotations

from pathlib import Path

import click
import click.testing
import pytest
from curate.pipelines.cli import cli
from helpers import run_cli

import curate


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, (*prefix, name)))
    return out


COMMANDS = _commands(cli)


def test_the_documented_commands_exist() -> None:
    assert {("run",), ("validate",), ("versions",), ("show",), ("stages",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = click.testing.CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    cmd: click.Command = cli
    for part in command:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[part]
    assert cmd.help and len(cmd.help.strip()) > 20, f"curate {' '.join(command)} needs a real help text"


def test_top_level_help_lists_exit_codes_and_version() -> None:
    res = run_cli("--help")
    assert res.returncode == 0 and "Exit codes:" in res.stdout and "curate run" in res.stdout
    assert run_cli("--version").stdout.strip() == f"curate, version {curate.__version__}"


def test_missing_dataset_exit_4(tmp_path: Path) -> None:
    for args in (("versions", "nope"), ("show", "nope@3")):
        res = run_cli(*args, cwd=tmp_path)
        assert res.returncode == 4
        assert res.stderr.startswith("error: no curate dataset at nope")
        assert "Traceback" not in res.stderr


def test_missing_pipeline_file_exit_2(tmp_path: Path) -> None:
    res = run_cli("run", "missing.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert "error: pipeline file not found: missing.yaml" in res.stderr


def test_stages_lists_builtins_and_describes_params() -> None:
    res = run_cli("stages")
    assert res.returncode == 0
    for name in ("normalize", "length_filter", "exact_dedup"):
        assert name in res.stdout
    res = run_cli("stages", "length_filter")
    assert res.returncode == 0 and "min_chars" in res.stdout and "drop documents with fewer characters" in res.stdout
    bad = run_cli("stages", "lenght_filter")
    assert bad.returncode == 2 and "did you mean 'length_filter'?" in bad.stderr
