"""The run directory's own files: a run never destroys what a previous run wrote.

- `config.json` is written only after the config validated and the checkpoint restore passed
  (`record_config`); a changed config is reported key by key, and the previous file is kept under
  `config_history/`.
- `export/` is written next to the old one and swapped in only when complete (`swap_in`); a
  previous export is kept as `export.previous-<time>`.
- `metrics.jsonl` is only appended to (`alignax.train.metrics.MetricsWriter`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from alignax import files


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_changes(old: dict, new: dict) -> list[str]:
    """`key: old -> new` for every flattened key whose value differs (added and removed keys too)."""
    before, after = _flatten(old), _flatten(new)
    return [
        f"{key}: {before.get(key, '<absent>')!r} -> {after.get(key, '<absent>')!r}"
        for key in sorted(set(before) | set(after))
        if before.get(key, "<absent>") != after.get(key, "<absent>")
    ]


def previous_config(workdir: str) -> dict | None:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable ({error}); move it away to start a run in {workdir}") from None


def record_config(workdir: str, config_json: str) -> list[str]:
    """Write DIR/config.json; return the changes from the previous run's config ([] if none).

    The previous file, when it differs, is kept as DIR/config_history/config.<n>.json."""
    new = json.loads(config_json)
    old = previous_config(workdir)
    changes = [] if old is None else config_changes(old, new)
    if old is not None and changes:
        history = os.path.join(workdir, "config_history")
        os.makedirs(history, exist_ok=True)
        number = len(os.listdir(history))
        shutil.copy2(os.path.join(workdir, "config.json"), os.path.join(history, f"config.{number}.json"))
    files.write_atomic(os.path.join(workdir, "config.json"), config_json)
    return changes


def staging_dir(final_dir: str) -> str:
    """A fresh sibling directory to write `final_dir`'s new contents into (removed if left over)."""
    staging = f"{final_dir}.partial"
    if os.path.exists(staging):
        shutil.rmtree(staging)  # only ever a half-written copy of ours, never a finished output
    return staging


def swap_in(staging: str, final_dir: str) -> str | None:
    """Move the finished `staging` directory to `final_dir`; keep an existing one as
    `<final_dir>.previous-<time>` and return that path (None if there was none)."""
    kept = None
    if os.path.exists(final_dir):
        kept = f"{final_dir}.previous-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(final_dir, kept)
    os.replace(staging, final_dir)
    return kept
