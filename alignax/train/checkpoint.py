"""Orbax checkpoints of (TrainState, data-iterator state), with fallback past a broken last step.

Layout: DIR/checkpoints/<step>/{state, data}. `state` is the sharded TrainState (params,
optimizer state, step, RNG); `data` is the iterator's small JSON state, so a resumed run sees
exactly the batches an uninterrupted one would.

Restore never deletes anything. Rules (`Checkpointer.restore_latest`):
  - A partial or corrupt checkpoint (no commit marker, a missing item, missing or truncated files:
    what a run killed mid-save or an incomplete copy leaves) is skipped, with a warning naming it,
    for the previous one.
  - A checkpoint whose arrays differ in shape or dtype from the restore target (the config changed)
    is an error naming the first differing key; it is compared from the checkpoint's metadata
    before any array is read.
  - Any other restore error (I/O, out of memory, ...) is raised as is.
When the resumed run later saves a step number that was skipped as unreadable, the unreadable
directory is first moved aside to DIR/checkpoints.unreadable/<step>-<time> (kept, not deleted).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)

COMMIT_MARKER = "commit_success.txt"  # written by orbax once a step directory is complete
# tensorstore status codes that mean missing or cut files (as orbax reports them, in a ValueError).
_CORRUPT_STATUSES = ("NOT_FOUND", "OUT_OF_RANGE", "DATA_LOSS")


class CheckpointMismatchError(ValueError):
    """The checkpoint's arrays do not fit the restore target (shape or dtype): the config changed."""


def _is_corruption(error: BaseException) -> bool:
    """True for the errors a partial or truncated checkpoint gives; False for I/O, memory, others."""
    if isinstance(error, (json.JSONDecodeError, FileNotFoundError, EOFError)):
        return True
    return isinstance(error, ValueError) and str(error).lstrip().startswith(_CORRUPT_STATUSES)


def _shapes_by_key(tree) -> dict[str, tuple[tuple[int, ...], np.dtype] | None]:
    """Key -> (shape, dtype), keyed as orbax keys the saved arrays (`ocp.tree.to_flat_dict`), so a
    target's keys and its checkpoint metadata's keys agree (nnx variables included)."""
    flat = ocp.tree.to_flat_dict(tree)
    return {
        ".".join(map(str, key)): ((tuple(leaf.shape), np.dtype(leaf.dtype)) if hasattr(leaf, "shape") else None)
        for key, leaf in flat.items()
    }


def first_mismatch(saved_tree, target_tree) -> str | None:
    """The first key (in the target's order) whose shape or dtype differs, or that one side lacks."""
    saved, target = _shapes_by_key(saved_tree), _shapes_by_key(target_tree)
    for key, expected in target.items():
        if key not in saved:
            return f"{key!r} is not in the checkpoint"
        if expected is not None and saved[key] is not None and saved[key] != expected:
            return (
                f"{key!r}: the checkpoint has shape {saved[key][0]} {saved[key][1]}, "
                f"the current config expects {expected[0]} {expected[1]}"
            )
    extra = [key for key in saved if key not in target]
    return f"{extra[0]!r} is in the checkpoint but not in the current config" if extra else None


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager`: async save, keep-N, optional best-by-metric."""

    def __init__(
        self,
        directory: str,
        *,
        keep: int = 2,
        best_metric: str | None = None,
        best_mode: str = "min",
        async_save: bool = True,
    ):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            enable_async_checkpointing=async_save,
            best_fn=(lambda metrics: metrics[best_metric]) if best_metric else None,
            best_mode=best_mode,
            keep_checkpoints_without_metrics=True,
            create=True,
        )
        # Explicit handlers (not just item names): a freshly opened manager can then read the
        # state's metadata (shapes, dtypes) before any restore, for the config check.
        handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)
        self._unreadable: set[int] = set()  # steps skipped by restore_latest (moved aside before re-saving)

    def save(self, step: int, state: Any, data_state: dict, metrics: dict | None = None) -> None:
        if step in self._unreadable:
            self._move_aside(step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state))
        self.manager.save(step, args=args, metrics=metrics, force=True)

    def _problem(self, step: int) -> str | None:
        """Why step's directory is partial (None if it looks complete)."""
        step_dir = os.path.join(self.directory, str(step))
        if not os.path.isfile(os.path.join(step_dir, COMMIT_MARKER)):
            return f"no commit marker ({COMMIT_MARKER})"
        for item in ("state", "data"):
            if not os.path.isdir(os.path.join(step_dir, item)):
                return f"item {item!r} is missing"
        return None

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """(step, state, data_state) of the newest usable checkpoint; None if there is none.

        Deletes nothing. A partial or corrupt checkpoint is skipped for the previous one with a
        warning naming it; a shape/dtype mismatch with `abstract_state` raises
        `CheckpointMismatchError` naming the first differing key; any other error is raised.
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            where = os.path.join(self.directory, str(step))
            problem = self._problem(step)
            if problem is None:
                try:
                    return self._restore(step, abstract_state)
                except CheckpointMismatchError:
                    raise
                except Exception as error:  # noqa: BLE001 — classified, re-raised unless it is corruption
                    if not _is_corruption(error):
                        raise
                    problem = f"{type(error).__name__}: {str(error)[:300]}"
            log.warning("checkpoint %s is partial or corrupt (%s); falling back to the previous one", where, problem)
            print(
                f"WARNING: checkpoint step {step} in {self.directory} is partial or corrupt ({problem[:200]}); "
                f"falling back to the previous one: {where}"
            )
            self._unreadable.add(step)
        return None

    def _restore(self, step: int, abstract_state: Any) -> tuple[int, Any, dict]:
        saved = self.manager.item_metadata(step)["state"]
        if saved is None:
            raise FileNotFoundError(f"no state metadata in {os.path.join(self.directory, str(step))}")
        saved_tree = getattr(saved, "tree", saved)
        mismatch = first_mismatch(saved_tree, abstract_state)
        if mismatch is not None:
            raise CheckpointMismatchError(
                f"checkpoint {os.path.join(self.directory, str(step))} does not fit the current config: {mismatch}. "
                "Resume with the config it was saved with, or start a new workdir."
            )
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()),
        )
        return step, restored.state, dict(restored.data)

    def _move_aside(self, step: int) -> None:
        """Move an unreadable step out of the manager's directory before its number is saved again."""
        source = os.path.join(self.directory, str(step))
        if os.path.isdir(source):
            target = os.path.join(self.directory + ".unreadable", f"{step}-{time.strftime('%Y%m%dT%H%M%S')}")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(source, target)
            print(f"WARNING: moved the unreadable checkpoint {source} to {target} before saving step {step} again")
            self.manager.reload()
        self._unreadable.discard(step)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs with the same shardings: the restore target for `restore_latest`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
