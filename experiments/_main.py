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

    def main(argv):
        del argv
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every file it writes at INFO
        if main_fn is None:
            from alignax.train.loop import train

            summary = train(flags.FLAGS.config, flags.FLAGS.workdir)
            print(f"done: step {summary['final_step']}; outputs in {flags.FLAGS.workdir}")
        else:
            main_fn(flags.FLAGS.config, flags.FLAGS.workdir)

    app.run(main, argv=sys.argv)
