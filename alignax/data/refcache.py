"""Reference log-prob cache: compute log pi_ref(y|x) once per dataset and reuse it.

    ref = compute_reference_logps(dataset, logps_fn, cache_dir=..., model_id=...)
    # ref: [K, N] float32 (K sides, N examples in dataset order); ref[0] = chosen, ref[1] = rejected

`logps_fn(batch) -> {"chosen_logps": [B], "rejected_logps": [B]}` (keys `<side>_logps` for each
side of the task) runs the frozen reference model on a batch from `alignax.data.packing`.

Storage: `cache_dir/<fingerprint[:24]>/` with `meta.json` (the fingerprint's components) and
`shard_00000.npz`, ... each holding the log-probs of `shard_size` consecutive examples. The
fingerprint hashes (dataset content + tokenizer + truncation: `TokenizedDataset.fingerprint`;
the model identity; the batch layout is excluded as it does not change the values beyond
float error). Shards are written atomically (temporary file + rename), so an interrupted pass
leaves only whole shards, and the next call computes only the missing ones. A different model,
tokenizer, truncation or data gives a different fingerprint, hence a fresh directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Callable

import numpy as np

from alignax import files
from alignax.data.packing import BatchLayout, build_batch


def cache_fingerprint(dataset, model_id: str) -> str:
    return hashlib.sha256(
        json.dumps({"data": dataset.fingerprint, "model": model_id}, sort_keys=True).encode()
    ).hexdigest()


def params_fingerprint(tree) -> str:
    """A model identity from its parameters: SHA-256 over every leaf's path, shape, dtype and bytes."""
    import jax

    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        arr = np.asarray(leaf)
        h.update(f"{jax.tree_util.keystr(path)}:{arr.shape}:{arr.dtype}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


@dataclasses.dataclass
class CacheStats:
    shards_loaded: int = 0
    shards_computed: int = 0
    batches_computed: int = 0
    examples_computed: int = 0


def _atomic_save(path: str, **arrays) -> None:
    with files.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def compute_reference_logps(
    dataset,
    logps_fn: Callable[[dict], dict],
    *,
    cache_dir: str,
    model_id: str,
    batch_size: int = 8,
    layout: BatchLayout = BatchLayout(),
    shard_size: int = 256,
    stats: CacheStats | None = None,
) -> np.ndarray:
    """Reference log-probs [K, N] for every example of `dataset`, from the cache where present."""
    stats = stats if stats is not None else CacheStats()
    fingerprint = cache_fingerprint(dataset, model_id)
    directory = os.path.join(cache_dir, fingerprint[:24])
    os.makedirs(directory, exist_ok=True)
    meta_path = os.path.join(directory, "meta.json")
    meta = {
        "fingerprint": fingerprint,
        "dataset": dataset.fingerprint,
        "model": model_id,
        "task": dataset.task,
        "sides": list(dataset.side_names),
        "num_examples": len(dataset.examples),
        "shard_size": shard_size,
    }
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved != meta:
            raise ValueError(
                f"{meta_path} describes a different cache ({saved}); expected {meta}: remove the directory"
            )
    else:
        files.write_atomic(meta_path, json.dumps(meta, indent=1, sort_keys=True))

    num_sides, num = len(dataset.side_names), len(dataset.examples)
    out = np.zeros((num_sides, num), np.float32)
    for shard, start in enumerate(range(0, num, shard_size)):
        stop = min(start + shard_size, num)
        path = os.path.join(directory, f"shard_{shard:05d}.npz")
        if os.path.exists(path):
            with np.load(path, allow_pickle=False) as z:
                if z["logps"].shape != (num_sides, stop - start):
                    raise ValueError(
                        f"{path}: logps has shape {z['logps'].shape}, expected {(num_sides, stop - start)}"
                    )
                out[:, start:stop] = z["logps"]
            stats.shards_loaded += 1
            continue
        for b in range(start, stop, batch_size):
            positions = list(range(b, min(b + batch_size, stop)))
            # Fixed batch size: pad a short last batch by repeating its first example.
            padded = positions + [positions[0]] * (batch_size - len(positions))
            batch = build_batch([dataset.examples[i] for i in padded], layout, side_names=dataset.side_names)
            result = logps_fn(batch)
            for k, side in enumerate(dataset.side_names):
                key = f"{side}_logps"
                if key not in result:
                    raise KeyError(f"logps_fn returned keys {sorted(result)}; expected {key!r} for side {side!r}")
                values = np.asarray(result[key], np.float32)
                if values.shape != (batch_size,):
                    raise ValueError(f"logps_fn()[{key!r}] has shape {values.shape}, expected ({batch_size},)")
                out[k, positions] = values[: len(positions)]
            stats.batches_computed += 1
            stats.examples_computed += len(positions)
        _atomic_save(
            path,
            logps=out[:, start:stop],
            example_index=np.asarray([dataset.examples[i].index for i in range(start, stop)], np.int64),
        )
        stats.shards_computed += 1
    return out
