"""Stage directories, completion markers and progress bars of the on-policy loop.

Every stage of iteration k lives in DIR/iter_<k>/<stage>/. A stage appends its records with
`alignax.files.append_jsonl` (one atomic write per chunk, a torn tail cut off on restart) and
writes DIR/iter_<k>/<stage>/DONE.json (atomically) only when everything is there. Rerunning the
command skips stages that have DONE.json and resumes the others from their records, so a SIGKILL
at any point loses nothing and duplicates nothing.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

import tqdm

from alignax import files

STAGES = ("sample", "score", "build", "train", "evaluate")
DONE = "DONE.json"


def stage_dir(workdir: str, iteration: int, stage: str) -> str:
    return os.path.join(workdir, f"iter_{iteration}", stage)


def load_done(directory: str) -> dict | None:
    path = os.path.join(directory, DONE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_stage(workdir: str, iteration: int, stage: str, fn: Callable[[str], dict]) -> dict:
    """`fn(directory) -> result` unless the stage is done; the result (+ seconds) is its DONE.json."""
    directory = stage_dir(workdir, iteration, stage)
    result = load_done(directory)
    if result is not None:
        return result
    os.makedirs(directory, exist_ok=True)
    started = time.time()
    result = dict(fn(directory))
    result["seconds"] = time.time() - started
    files.write_atomic(os.path.join(directory, DONE), json.dumps(result, indent=1))
    return result


def progress(iteration: int, stage: str, total: int, unit: str) -> tqdm.tqdm:
    """A bar with rate and ETA for one stage."""
    return tqdm.tqdm(total=total, desc=f"iter {iteration} {stage}", unit=unit, dynamic_ncols=True, leave=False)


def chunks(items: list, size: int) -> list[list]:
    """Fixed chunk boundaries over the WHOLE list (not over what is left): a resumed stage runs the
    same batches as an uninterrupted one, so its numbers match to the last bit."""
    size = max(1, int(size))
    return [items[i : i + size] for i in range(0, len(items), size)]
