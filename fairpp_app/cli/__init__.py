"""The ``fairpp`` command: the TUI with no arguments, headless sub-commands otherwise.

stdout carries data (tables, or JSON with ``--json``); stderr carries narration and
errors. Exit codes: 0 success, 1 failure, 2 bad usage or input, 3 unusable database,
4 something named does not exist, 130 interrupted.

The parser lives in :mod:`~fairpp_app.cli.parser` and each group of commands in a module of its
own; a command's module is imported only when that command runs, so ``fairpp --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

from fairpp_app.cli.parser import build_parser
from fairpp_app.core.errors import FairppError

#: Which module handles each sub-command (as ``cmd_<command>``).
HANDLERS = {
    "questions": "bank_commands", "personas": "bank_commands",
    "import": "data_commands", "export": "data_commands",
    "simulate": "run_commands", "scenarios": "run_commands", "runs": "run_commands",
    "jobs": "run_commands",
    "weights": "run_commands", "metrics": "analysis_commands", "position": "analysis_commands",
    "train": "training_commands", "evaluate": "training_commands", "report": "analysis_commands",
    "sweep": "sweep_commands",
    "backends": "system_commands", "doctor": "system_commands", "info": "system_commands",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from fairpp_app.cli.system_commands import open_tui

            return open_tui(args)
        module = importlib.import_module(f"fairpp_app.cli.{HANDLERS[args.command]}")
        return getattr(module, f"cmd_{args.command}")(args) or 0
    except FairppError as exc:
        print(f"fairpp: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fairpp: interrupted; finished work is saved", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
