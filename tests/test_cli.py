"""The `tir` command group: version, help for every command, one-line errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tir import __version__
from tir.cli import COMMANDS, cli


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_group_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_is_explained(name):
    command = cli.get_command(None, name)
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            assert param.help, f"`tir {name}` option {param.opts} has no help text"


def test_user_error_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "nothing.parquet"
    result = CliRunner().invoke(cli, ["info", str(missing)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "Traceback" not in result.output
    assert str(missing) in result.output


def test_a_full_disk_outside_the_atomic_writers_is_one_line(tmp_path, monkeypatch):
    import errno

    from tir.pipeline import prepare

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache.u8"))

    monkeypatch.setattr(prepare, "prepare_dataset", disk_full)
    result = CliRunner().invoke(cli, ["prepare", "CUHK-PEDES", "--root", str(tmp_path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "cache.u8: cannot write (No space left on device); the disk is full" in result.output
