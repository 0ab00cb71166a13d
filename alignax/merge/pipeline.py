"""Merging Hugging Face folders tensor by tensor, block by block (formulas: alignax/merge/methods.py).

Memory: one output shard is open for writing at a time and is filled as tensors are merged; each tensor is
read in blocks of at most `block_elements` elements along its first axis (`checkpoint.row_blocks`), each
read opening and closing its shard, so the process holds O(K · block) floats plus, for TIES, one 65,536-bin
histogram per model — never a whole model, shard or even tensor. TIES reads every tensor three times (two
radix-select passes for the sparse threshold, then the merge); the others once.

Output layout mirrors the base: the same shard file names holding the same tensors (and the base's index,
with its total_size recomputed), the base's dtypes, and the base's config/tokenizer files copied verbatim.
Everything is checked (folders, architectures, tensor names and shapes, weights and densities) before any
file is written.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Callable, Sequence

import numpy as np

from alignax.merge import checkpoint as ckpt
from alignax.merge import methods

MergeError = ckpt.MergeError
DEFAULT_BLOCK_ELEMENTS = 1 << 21


@dataclasses.dataclass(frozen=True)
class MergeSpec:
    """What to merge and how; `weights` and `densities` have one entry per model (see `make_spec`)."""

    method: methods.Method
    weights: tuple[float, ...]
    densities: tuple[float, ...]
    seed: int = 0
    lam: float = 1.0
    normalize: bool = False


def make_spec(
    method: str,
    n_models: int,
    weights: Sequence[float] | None = None,
    density: Sequence[float] | float | None = None,
    seed: int = 0,
    lam: float = 1.0,
    normalize: bool | None = None,
) -> MergeSpec:
    """Checks and completes the options: weights default to 1 per model (mergekit requires them); `density`
    is one value or one per model, required for the sparsifying methods and refused for task_arithmetic;
    `normalize` defaults to the method's (mergekit's) default."""
    if method not in methods.METHODS:
        raise MergeError(f"unknown method {method!r}; choose one of {sorted(methods.METHODS)}")
    chosen = methods.METHODS[method]
    if n_models < 1:
        raise MergeError("at least one model to merge into the base is needed")
    weights = tuple(float(w) for w in (weights if weights is not None else [1.0] * n_models))
    if len(weights) != n_models:
        raise MergeError(f"{len(weights)} weights given for {n_models} models; give one weight per model")
    densities = _densities(chosen, n_models, density)
    normalize = chosen.default_normalize if normalize is None else bool(normalize)
    return MergeSpec(chosen, weights, densities, int(seed), float(lam), normalize)


def _densities(method: methods.Method, n_models: int, density) -> tuple[float, ...]:
    if method.sparsifier is None:
        if density is not None:
            raise MergeError(f"{method.name} does not sparsify; --density has no effect there, drop it")
        return (1.0,) * n_models
    if density is None:
        raise MergeError(f"{method.name} needs --density (the kept fraction, in (0, 1])")
    values = [float(density)] if np.isscalar(density) else [float(d) for d in density]
    if len(values) == 1:
        values = values * n_models
    if len(values) != n_models:
        raise MergeError(f"{len(values)} densities given for {n_models} models; give one, or one per model")
    for d in values:
        if not 0 < d <= 1:
            raise MergeError(f"density {d} is outside (0, 1] (density is the kept fraction 1 - drop rate)")
    return tuple(values)


def check_compatible(base: ckpt.ModelFolder, models: Sequence[ckpt.ModelFolder]) -> None:
    """Same architecture (config keys ckpt.ARCHITECTURE_KEYS), same tensor names, same shapes."""
    for model in models:
        for key in ckpt.ARCHITECTURE_KEYS:
            if model.config.get(key) != base.config.get(key):
                raise MergeError(
                    f"{model.path}: config.json {key} = {model.config.get(key)!r} differs from the "
                    f"base {base.path} ({base.config.get(key)!r}); models of different architectures "
                    "cannot be merged"
                )
        for name, info in base.tensors.items():
            other = model.tensors.get(name)
            if other is None:
                raise MergeError(f"{model.path}: tensor {name!r} (present in the base {base.path}) is missing")
            if other.shape != info.shape:
                raise MergeError(
                    f"{model.path}: tensor {name!r} has shape {list(other.shape)}, the base "
                    f"{base.path} has {list(info.shape)}"
                )
            if (other.dtype in ckpt.FLOAT_DTYPES) != (info.dtype in ckpt.FLOAT_DTYPES):
                raise MergeError(f"{model.path}: tensor {name!r} has dtype {other.dtype}, the base has {info.dtype}")
        extra = sorted(set(model.tensors) - set(base.tensors))
        if extra:
            raise MergeError(
                f"{model.path}: tensor {extra[0]!r} is not in the base {base.path} ({len(extra)} such tensors)"
            )


def merge_tensor(
    name: str,
    base: ckpt.ModelFolder,
    models: Sequence[ckpt.ModelFolder],
    spec: MergeSpec,
    write: Callable[[np.ndarray], None],
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> None:
    """Merges tensor `name` and hands the result to `write` block by block, in the base's dtype.

    Non-float tensors (integer buffers) are copied from the base.
    """
    info = base.tensors[name]
    out_dtype = ckpt.NUMPY_DTYPES[info.dtype]
    blocks = list(ckpt.row_blocks(info.shape, block_elements))
    if info.dtype not in ckpt.FLOAT_DTYPES:
        for start, stop in blocks:
            write(base.read_rows(name, start, stop))
        return
    work = np.float64 if info.dtype == "F64" else np.float32
    numel = int(np.prod(info.shape, dtype=np.int64))
    sparsifier = methods.SPARSIFIERS.get(spec.method.sparsifier)
    sparsifiers = (
        [sparsifier(d, numel, methods.tensor_seed(spec.seed, i, name)) for i, d in enumerate(spec.densities)]
        if sparsifier
        else []
    )

    def read_block(start, stop):
        base_block = base.read_rows(name, start, stop).astype(work)
        deltas = np.stack([m.read_rows(name, start, stop).astype(work) - base_block for m in models])
        return base_block, deltas

    for pass_no in range(max((s.passes for s in sparsifiers), default=0)):
        active = [(i, s) for i, s in enumerate(sparsifiers) if s.passes > pass_no]
        for start, stop in blocks:
            _, deltas = read_block(start, stop)
            for i, sparse in active:
                sparse.observe(deltas[i])
        for _, sparse in active:
            sparse.end_pass()
    weights = np.asarray(spec.weights, dtype=work)
    for start, stop in blocks:
        base_block, deltas = read_block(start, stop)
        if sparsifiers:
            deltas = np.stack([sparse.apply(delta) for sparse, delta in zip(sparsifiers, deltas)])
        mixed = methods.combine(
            deltas, weights, consensus=spec.method.consensus, normalize=spec.normalize, lam=spec.lam
        )
        write((base_block + mixed).astype(out_dtype))


def merge(
    base: str | pathlib.Path,
    models: Sequence[str | pathlib.Path],
    spec: MergeSpec,
    out: str | pathlib.Path,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    log: Callable[[str], None] | None = None,
) -> pathlib.Path:
    """Merges HF folders `models` into `base` per `spec`, writing the HF folder `out`; returns `out`."""
    base_folder = ckpt.ModelFolder(base)
    model_folders = [ckpt.ModelFolder(m) for m in models]
    if len(model_folders) != len(spec.weights):
        raise MergeError(f"{len(spec.weights)} weights given for {len(model_folders)} models")
    check_compatible(base_folder, model_folders)
    out = pathlib.Path(out)
    if (out / ckpt.SAFE_WEIGHTS_NAME).exists() or (out / ckpt.SAFE_WEIGHTS_INDEX_NAME).exists():
        raise MergeError(f"{out}: already holds a model; choose an empty output folder")
    out.mkdir(parents=True, exist_ok=True)
    weight_map, total = {}, 0
    for shard in base_folder.shards:
        names = base_folder.shard_tensors(shard)
        entries = [(n, base_folder.tensors[n].dtype, base_folder.tensors[n].shape) for n in names]
        with ckpt.ShardWriter(out / shard, entries, {"format": "pt"}) as writer:
            for name in names:
                merge_tensor(name, base_folder, model_folders, spec, writer.write, block_elements)
                weight_map[name] = shard
                total += base_folder.tensors[name].nbytes
        if log:
            log(f"wrote {out / shard} ({len(names)} tensors)")
    if len(base_folder.shards) > 1 or base_folder.shards[0] != ckpt.SAFE_WEIGHTS_NAME:
        ckpt.write_index(out, weight_map, total)
    ckpt.copy_side_files(base_folder.path, out)
    _write_record(out, base_folder, model_folders, spec)
    return out


def _write_record(
    out: pathlib.Path, base: ckpt.ModelFolder, models: Sequence[ckpt.ModelFolder], spec: MergeSpec
) -> None:
    """merge_config.json: what produced this folder (method, inputs, options), for reproducibility."""
    record = {
        "method": spec.method.name,
        "reference": spec.method.reference,
        "base": str(base.path),
        "models": [str(m.path) for m in models],
        "weights": list(spec.weights),
        "densities": list(spec.densities),
        "seed": spec.seed,
        "lambda": spec.lam,
        "normalize": spec.normalize,
    }
    (out / "merge_config.json").write_text(json.dumps(record, indent=2) + "\n")
