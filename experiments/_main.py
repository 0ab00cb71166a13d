"""Shared command line of every experiment entry point.

  python -m experiments.<name> --config configs/<name>.py[:preset] --workdir DIR [--config.key=value ...]

`--config` names a Python config file whose `get_config(preset)` returns the locked ConfigDict;
overrides of keys that do not exist are errors. Running again with the same DIR resumes.
`--help` lists the presets, the config keys with their defaults and meanings, and the loss names
the config trains.
"""

from __future__ import annotations

import os
import shlex
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _print_help(default_config: str) -> None:
    from experiments import cli_help

    print(cli_help.render(REPO_ROOT, default_config, sys.argv))


def _resume_command(workdir: str | None = None) -> str:
    """The command that resumes this run: the same arguments, pointed at `workdir` when given
    (after --start_over moved the run), without --start_over."""
    args, skip_next = [], False
    for arg in sys.argv[1:]:
        if skip_next:
            skip_next = False
        elif workdir and arg == "--workdir":
            skip_next = True
        elif not arg.startswith("--start_over") and not (workdir and arg.startswith("--workdir=")):
            args.append(arg)
    if workdir:
        args += ["--workdir", workdir]
    return " ".join(shlex.quote(arg) for arg in ["python", "-m", _module_name(), *args])


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else "experiments.<name>"


def _train(config, workdir: str) -> None:
    from alignax.train import summary as summary_lib
    from alignax.train.loop import train

    summary = train(config, workdir)
    print(summary_lib.render(summary, workdir))
    print(f"done: step {summary['final_step']}; outputs in {workdir}")


def _user_errors() -> tuple:
    """Errors caused by the input (config, data, checkpoint), shown as one message, no traceback."""
    from alignax.data.errors import DataError
    from alignax.train.checkpoint import CheckpointMismatchError
    from alignax.train.validate import ConfigError

    return ConfigError, DataError, CheckpointMismatchError, FileNotFoundError


def run(default_config: str, main_fn=None) -> None:
    """Entry point body: parse flags, then `main_fn(config, workdir)` (default: train)."""
    if any(arg in ("--help", "-h", "--helpfull") for arg in sys.argv[1:]):
        _print_help(default_config)
        sys.exit(0)
    config_flags.DEFINE_config_file(
        "config", os.path.join(REPO_ROOT, default_config), "experiment config file[:preset]", lock_config=True
    )
    flags.DEFINE_string("workdir", None, "run directory (metrics, checkpoints, export); reused to resume")
    flags.mark_flag_as_required("workdir")
    flags.DEFINE_bool(
        "start_over",
        False,
        "if --workdir already holds a run, start from step 0 in a new directory "
        "<workdir>-<time> instead of resuming (the old run is left as it is)",
    )
    started = []

    def main(argv):
        del argv
        started.append(True)
        from alignax.compile_cache import enable_compilation_cache

        enable_compilation_cache()  # a second run of the same command skips compilation
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every file it writes at INFO
        from alignax.train.loop import TrainingInterrupted

        workdir = flags.FLAGS.workdir
        if flags.FLAGS.start_over and os.path.isdir(os.path.join(workdir, "checkpoints")):
            workdir = f"{workdir.rstrip('/')}-{time.strftime('%Y%m%d-%H%M%S')}"
            print(f"--start_over: {flags.FLAGS.workdir} holds a run; starting over in {workdir}")
        moved = workdir if workdir != flags.FLAGS.workdir else None
        try:
            (main_fn or _train)(flags.FLAGS.config, workdir)
        except TrainingInterrupted as stop:
            kept = f"checkpoint step {stop.checkpoint_step}" if stop.checkpoint_step else "no checkpoint yet"
            sys.stderr.write(
                f"\nInterrupted after step {stop.step} ({kept} kept in {workdir}/checkpoints).\n"
                f"Resume with:\n  {_resume_command(moved)}\n"
            )
            sys.exit(130)
        except _user_errors() as error:
            sys.stderr.write(
                f"error: {error}\nNothing finished was lost; fix the input and rerun:\n  {_resume_command(moved)}\n"
            )
            sys.exit(2)

    try:
        app.run(main, argv=sys.argv)
    except KeyboardInterrupt:
        sys.stderr.write(f"\nInterrupted before training started. Rerun with:\n  {_resume_command()}\n")
        sys.exit(130)
    except (AttributeError, KeyError) as error:
        if started:
            raise
        # ml_collections reports an override of a key the config does not have as a bare
        # AttributeError from inside flag parsing; say which flag and where the keys are listed.
        overrides = [arg.split("=")[0] for arg in sys.argv[1:] if arg.startswith("--config.")]
        sys.exit(
            f"error: unknown config key {error} (overrides given: {', '.join(overrides)}). "
            f"The keys are those of the config file's get_config(); see --help."
        )
