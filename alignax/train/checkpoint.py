"""Orbax checkpoints of (TrainState, data-iterator state), with fallback past a broken last step.

Layout: DIR/checkpoints/<step>/{state, data}. `state` is the sharded TrainState (params,
optimizer state, step, RNG); `data` is the iterator's small JSON state, so a resumed run sees
exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


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
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def save(self, step: int, state: Any, data_state: dict, metrics: dict | None = None) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state))
        self.manager.save(step, args=args, metrics=metrics, force=True)

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """(step, state, data_state) of the newest checkpoint that restores; None if there is none.

        A corrupt or partial newest checkpoint (a run killed mid-save) is skipped with a warning
        and the previous one is used: nothing already finished is lost. The unreadable steps are
        then deleted, since the resumed run saves those step numbers again."""
        unreadable = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
                    ),
                )
            except Exception as error:  # noqa: BLE001 — any failure to read means "not usable"
                log.warning("checkpoint %s/%d could not be restored (%s: %s); falling back to the previous one",
                            self.directory, step, type(error).__name__, str(error)[:300])
                print(f"WARNING: checkpoint step {step} in {self.directory} is unreadable "
                      f"({type(error).__name__}); falling back to the previous one")
                unreadable.append(step)
                continue
            self._delete(unreadable)
            return step, restored.state, dict(restored.data)
        self._delete(unreadable)
        return None

    def _delete(self, steps) -> None:
        for step in steps:
            self.manager.delete(step)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs with the same shardings: the restore target for `restore_latest`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
