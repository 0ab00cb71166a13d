"""Shared command line of every experiment entry point.

  python -m experiments.<name> --config configs/<name>.py[:preset] --workdir DIR [--config.key=value ...]

`--config` names a Python config file whose `get_config(preset)` returns the locked ConfigDict;
overrides of keys that do not exist are errors. Running again with the same DIR resumes.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402


def run(default_config: str, main_fn=None) -> None:
    """Entry point body: parse flags, then `main_fn(config, workdir)` (default: train)."""
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config_flags.DEFINE_config_file("config", os.path.join(repo_root, default_config), "experiment config file[:preset]", lock_config=True)
    flags.DEFINE_string("workdir", None, "run directory (metrics, checkpoints, export); reused to resume")
    flags.mark_flag_as_required("workdir")

    started = []

    def main(argv):
        del argv
        started.append(True)
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every file it writes at INFO
        if main_fn is None:
            from alignax.train.loop import train

            summary = train(flags.FLAGS.config, flags.FLAGS.workdir)
            print(f"done: step {summary['final_step']}; outputs in {flags.FLAGS.workdir}")
        else:
            main_fn(flags.FLAGS.config, flags.FLAGS.workdir)

    try:
        app.run(main, argv=sys.argv)
    except (AttributeError, KeyError) as error:
        if started:
            raise
        # ml_collections reports an override of a key the config does not have as a bare
        # AttributeError from inside flag parsing; say which flag and where the keys are listed.
        overrides = [arg.split("=")[0] for arg in sys.argv[1:] if arg.startswith("--config.")]
        sys.exit(f"error: unknown config key {error} (overrides given: {', '.join(overrides)}). "
                 f"The keys are those of the config file's get_config(); see configs/base.py.")
