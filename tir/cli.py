"""The ``tir`` command: a Click group whose subcommands are imported only when used.

Lazy loading keeps ``tir --help`` and the data stages fast: torch and spaCy are imported by the
commands that need them, not at start-up.
"""

from __future__ import annotations

import errno
import importlib
import sys

import click

from tir import __version__
from tir.errors import UserError

# command name -> "module:attribute" of its click.Command
COMMANDS: dict[str, str] = {
    "synth": "tir.commands.synth:synth",
    "prepare": "tir.commands.prepare:prepare",
    "info": "tir.commands.info:info",
    "parse-graphs": "tir.commands.parse_graphs:parse_graphs",
    "plan-masks": "tir.commands.plan_masks:plan_masks",
    "make-noise": "tir.commands.make_noise:make_noise",
    "train": "tir.commands.train:train",
    "eval": "tir.commands.evaluate:evaluate",
    "index": "tir.commands.index:index",
    "search": "tir.commands.search:search",
    "serve": "tir.commands.serve:serve",
    "compare": "tir.commands.compare:compare",
}


# a full disk, a quota or a read-only folder met outside tir's atomic writers (caches, a library's own files)
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES})


class LazyGroup(click.Group):
    """A group that imports a subcommand's module on first use and reports UserError as one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context):  # noqa: D102 - click API
        try:
            return super().invoke(ctx)
        except UserError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)
        except OSError as error:
            if error.errno not in DISK_ERRORS:
                raise
            from tir.pipeline.store import write_error

            click.echo(f"error: {write_error(error, error.filename or '?')}", err=True)
            sys.exit(UserError.exit_code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tir")
def cli() -> None:
    """tir: text-to-image person re-identification, from raw annotations to retrieval metrics.

    Stages, each reading the artifacts of the one before: synth (optional) -> prepare ->
    parse-graphs -> plan-masks -> make-noise -> train -> eval. `tir info PATH` describes any artifact or run;
    index, search and serve use a trained run; compare sets runs side by side.
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="tir")


if __name__ == "__main__":
    main()
