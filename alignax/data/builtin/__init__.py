"""Built-in data shipped with the package, addressed as "builtin:NAME/SPLIT".

Regenerate with `python -m alignax.data.builtin.make_builtin` (deterministic, no downloads).
`manifest.json` lists every dataset, its task schema, size and SHA-256.
"""

from __future__ import annotations

import json
import os

BUILTIN_DIR = os.path.dirname(os.path.abspath(__file__))


def builtin_file_name(name: str) -> str:
    """ "arith_pairs/train" -> "arith_pairs_train.jsonl"."""
    return name.replace("/", "_") + ".jsonl"


def manifest() -> dict:
    with open(os.path.join(BUILTIN_DIR, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def builtin_names() -> list[str]:
    return sorted(manifest()["datasets"])


def builtin_path(name: str) -> str:
    """Path of the built-in dataset `name` (e.g. "arith_pairs/train"); the error lists the names."""
    path = os.path.join(BUILTIN_DIR, builtin_file_name(name))
    if not os.path.exists(path):
        raise FileNotFoundError(f"unknown built-in dataset {name!r}; known: {', '.join(builtin_names())}")
    return path


def builtin_task(name: str) -> str:
    return manifest()["datasets"][name]["task"]
