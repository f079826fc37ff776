"""The `epbench` command line: one module per subcommand, each with `register(subparsers)`.

A subcommand module adds its parser and sets `func=callable(args) -> int`. `main` turns
every user mistake (UsageError, ValueError from validation, a bad file) into one line on
stderr and a non-zero exit; only internal bugs show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bench.errors import UsageError

# Subcommand modules, in the order `epbench --help` lists them, and the commands each adds.
COMMAND_MODULES = (
    "bench.cmd_run",
    "bench.cmd_demo",
    "bench.cmd_codec",
    "bench.cmd_topo",
    "bench.cmd_simulate",
    "bench.cmd_report",
    "bench.cmd_slurm",
    "bench.cmd_mpirun",
)
COMMANDS = {
    "run": "bench.cmd_run",
    "demo": "bench.cmd_demo",
    "codec": "bench.cmd_codec",
    "topo": "bench.cmd_topo",
    "simulate": "bench.cmd_simulate",
    "load": "bench.cmd_report",
    "compare": "bench.cmd_report",
    "report": "bench.cmd_report",
    "slurm": "bench.cmd_slurm",
    "mpirun": "bench.cmd_mpirun",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (faster) only the module that defines `command`."""
    parser = _Parser(
        prog="epbench",
        description="Communication benchmarks for Mixture-of-Experts traffic.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = (COMMANDS[command],) if command in COMMANDS else COMMAND_MODULES
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a subcommand not present in this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Import only the chosen command's module: some pull in torch, seaborn or numba.
    parser = build_parser(args_list[0] if args_list else None)
    try:
        args = parser.parse_args(args_list)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"epbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("epbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
