"""Command line for the evaluation suite: `python -m alignax.evaluate <benchmark> [args]`.

Each benchmark module defines `add_arguments(parser)` and `run(args) -> int` (the exit status).
Modules are imported only when their sub-command runs, so a missing optional dependency of one
benchmark never breaks another.

Bad input is an `error: <file>: <row>: <what>` line on stderr and exit status 2, never a
traceback: benchmark modules wrap the reading of each file in `naming_file(path)`, which turns
the exceptions a malformed file raises (ValueError, KeyError, TypeError, OSError, EOFError,
IndexError) into an `InputError` whose message starts with the file; `main` prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from typing import Iterator, Optional, Sequence

# What a malformed or unreadable input file raises inside the metric code (OSError covers
# missing files, directories and bad gzip streams; EOFError a truncated gzip stream).
INPUT_ERRORS = (ValueError, LookupError, TypeError, OSError, EOFError)


class InputError(ValueError):
    """A bad input file; the message names the file (and the row where there is one)."""


def describe(error: BaseException) -> str:
    """The message of an exception (KeyError's str() would add quotes around it)."""
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    text = str(error)
    return text if text else type(error).__name__


@contextlib.contextmanager
def naming_file(path) -> Iterator[None]:
    """Re-raises input errors from reading `path` as InputError whose message names the file."""
    try:
        yield
    except InputError:
        raise
    except INPUT_ERRORS as error:
        message = describe(error)
        if str(path) not in message:
            message = f"{path}: {message}"
        raise InputError(message) from None


def positive_int(text: str) -> int:
    """argparse type for counts that must be >= 1 (bootstrap rounds, verdict weights)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


COMMANDS = {
    "alpaca_eval": "alignax.evaluate.alpaca_eval",
    "arena_hard": "alignax.evaluate.arena_hard",
    "wildbench": "alignax.evaluate.wildbench",
    "mt_bench": "alignax.evaluate.mt_bench",
    "leval": "alignax.evaluate.leval",
    "ruler": "alignax.evaluate.ruler",
    "rewardbench": "alignax.evaluate.rewardbench",
    "report": "alignax.evaluate.report",
    "run": "alignax.evaluate.run.command",
}

SUMMARIES = {
    "alpaca_eval": "AlpacaEval 2 raw + length-controlled win rates from annotations.json files",
    "arena_hard": "Arena-Hard-Auto Bradley-Terry scores with bootstrap CIs (v0.1 / v2.0, style control)",
    "wildbench": "WildBench WB-Reward (length penalty K) and WB-Score",
    "mt_bench": "MT-Bench scores from judge outputs",
    "leval": "L-Eval exact match, F1 and ROUGE",
    "ruler": "Ruler Precise / Flexible Match for target-length generation",
    "rewardbench": "RewardBench subset and section accuracies",
    "report": "leaderboard table (Markdown/CSV) and chart (PNG) for several models",
    "run": "generate a model's answers to a benchmark, judge, score and report (resumable)",
}

EPILOG = """examples:
  python -m alignax.evaluate alpaca_eval results/*/annotations.json --df-gamed df_gamed.csv
  python -m alignax.evaluate arena_hard battles.jsonl --baseline gpt-4-0314 --num-rounds 100
  python -m alignax.evaluate report results/*/annotations.json --df-gamed df_gamed.csv --out-dir report/
  python -m alignax.evaluate run --benchmark alpaca_eval --model smollm2-135m-instruct \\
      --judge local:smollm2-135m-instruct --limit 8 --workdir W
  python -m alignax.evaluate <benchmark> --help     (the options of one benchmark)
"""


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The top-level parser; only `command`'s module is imported (all summaries are static)."""
    parser = argparse.ArgumentParser(
        prog="python -m alignax.evaluate",
        description="Compute benchmark metrics from judge outputs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="<benchmark>", required=True)
    for name in COMMANDS:
        p = sub.add_parser(name, help=SUMMARIES[name], formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == command:
            load(name).add_arguments(p)
    return parser


def load(command: str):
    """Imports the module behind a sub-command, with a clear error if it is not available."""
    try:
        return importlib.import_module(COMMANDS[command])
    except ModuleNotFoundError as e:
        if e.name == COMMANDS[command]:
            raise SystemExit(
                f"benchmark {command!r} is not available in this installation ({COMMANDS[command]})"
            ) from e
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        return int(load(args.command).run(args) or 0)
    except INPUT_ERRORS as e:
        # Bad input: the message names the file / field / row (see `naming_file`).
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2
