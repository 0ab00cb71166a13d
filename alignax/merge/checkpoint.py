"""Streaming access to Hugging Face safetensors folders, for merging.

A folder holds `config.json` and either `model.safetensors` or the shards named by
`model.safetensors.index.json` (its `weight_map`). Nothing here imports jax: merging needs only numpy and
safetensors, which keeps the merge process small (see benchmarks/merge_memory.py).

Reading: `ModelFolder.read_rows(name, start, stop)` opens the shard with `safetensors.safe_open` for that
one read and closes it again, so the memory map (whose touched pages count towards RSS while mapped) never
outlives one block of rows of one tensor.

Writing: a safetensors file is an 8-byte little-endian header length, a JSON header
{name: {"dtype", "shape", "data_offsets": [begin, end]}} and the raw little-endian bytes (format:
https://github.com/huggingface/safetensors, README "Format"). The output shapes and dtypes are known before
any tensor is merged (they are the base model's), so `ShardWriter` writes the header first and then appends
each tensor's bytes as they are produced, never holding a whole shard.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
from typing import Any, Iterator

import ml_dtypes
import numpy as np
import safetensors

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
# Files copied verbatim from the base folder into the merged folder (glob patterns).
COPIED_FROM_BASE = (
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "chat_template*",
)
# Config keys that must agree between the base and every merged model.
ARCHITECTURE_KEYS = ("architectures", "model_type")

NUMPY_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})


class MergeError(ValueError):
    """A merge that cannot run; the message names the folder and, where one is at fault, the tensor."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: its shard file, safetensors dtype string and shape."""

    file: pathlib.Path
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * NUMPY_DTYPES[self.dtype].itemsize


def read_header(path: pathlib.Path) -> tuple[dict[str, Any], dict[str, str]]:
    """({name: {"dtype", "shape", "data_offsets"}}, metadata) of one .safetensors file, header only."""
    if not path.is_file():
        raise MergeError(f"{path}: safetensors file not found")
    with open(path, "rb") as f:
        prefix = f.read(8)
        size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if size < 0 or size > path.stat().st_size - 8:
            raise MergeError(f"{path}: not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MergeError(f"{path}: corrupt safetensors header: {e}") from e
    metadata = header.pop("__metadata__", None) or {}
    return header, metadata


class ModelFolder:
    """A Hugging Face model folder: its config, its shard files and a {tensor name: TensorInfo} table."""

    def __init__(self, folder: str | pathlib.Path):
        self.path = pathlib.Path(folder)
        if not self.path.is_dir():
            raise MergeError(f"{self.path}: model folder not found")
        config_path = self.path / CONFIG_NAME
        if not config_path.is_file():
            raise MergeError(f"{self.path}: no {CONFIG_NAME}")
        self.config = json.loads(config_path.read_text())
        weight_map = self._weight_map()
        self.shards = sorted(set(weight_map.values())) if weight_map else [SAFE_WEIGHTS_NAME]
        self.tensors: dict[str, TensorInfo] = {}
        for shard in self.shards:
            header, _ = read_header(self.path / shard)
            for name, entry in header.items():
                if entry.get("dtype") not in NUMPY_DTYPES:
                    raise MergeError(f"{self.path / shard}: tensor {name!r} has unsupported dtype {entry.get('dtype')}")
                self.tensors[name] = TensorInfo(self.path / shard, entry["dtype"], tuple(entry["shape"]))
        for name, shard in (weight_map or {}).items():
            if name not in self.tensors or self.tensors[name].file.name != shard:
                raise MergeError(f"{self.path / shard}: tensor {name!r} listed in {SAFE_WEIGHTS_INDEX_NAME} is missing")

    def _weight_map(self) -> dict[str, str] | None:
        """The index's {tensor: shard file}, or None for a single model.safetensors."""
        index_path = self.path / SAFE_WEIGHTS_INDEX_NAME
        if index_path.is_file():
            try:
                return dict(json.loads(index_path.read_text())["weight_map"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise MergeError(f"{index_path}: not a safetensors index (needs 'weight_map'): {e}") from e
        if (self.path / SAFE_WEIGHTS_NAME).is_file():
            return None
        raise MergeError(f"{self.path}: no {SAFE_WEIGHTS_NAME} or {SAFE_WEIGHTS_INDEX_NAME}")

    def shard_tensors(self, shard: str) -> list[str]:
        """Names of the tensors stored in `shard`, in file order."""
        header, _ = read_header(self.path / shard)
        return sorted(header, key=lambda name: header[name]["data_offsets"][0])

    def read_rows(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Rows start:stop (first axis) of tensor `name`; the whole tensor for None/None or a scalar."""
        info = self.tensors[name]
        try:
            with safetensors.safe_open(str(info.file), framework="numpy") as f:
                view = f.get_slice(name)
                array = view[start:stop] if info.shape else view[()]
                return np.asarray(array)
        except Exception as e:  # noqa: BLE001 - re-raised with the folder and tensor named
            raise MergeError(f"{info.file}: cannot read tensor {name!r}: {e}") from e


def row_blocks(shape: tuple[int, ...], max_elements: int) -> Iterator[tuple[int | None, int | None]]:
    """(start, stop) row ranges along axis 0 with at most max(max_elements, one row) elements each."""
    if not shape:
        yield None, None
        return
    row = int(np.prod(shape[1:], dtype=np.int64))
    step = max(1, max_elements // max(row, 1))
    for start in range(0, shape[0], step):
        yield start, min(start + step, shape[0])
    if shape[0] == 0:
        yield 0, 0


class ShardWriter:
    """Writes one .safetensors file: header first (from known shapes/dtypes), then tensors in that order.

    A context manager: leaving it by an exception closes the file and deletes it (no half-written shard).
    """

    def __init__(self, path: pathlib.Path, entries: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str]):
        self.path = path
        header: dict[str, Any] = {"__metadata__": dict(metadata)}
        offset = 0
        for name, dtype, shape in entries:
            nbytes = int(np.prod(shape, dtype=np.int64)) * NUMPY_DTYPES[dtype].itemsize
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        self.header = header
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        self.file = open(path, "wb")
        self.file.write(len(blob).to_bytes(8, "little") + blob)
        self.expected_size = 8 + len(blob) + offset

    def write(self, array: np.ndarray) -> None:
        """Appends a block of rows of the current tensor (C order, already in the header's dtype)."""
        self.file.write(np.ascontiguousarray(array).tobytes())

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.file.close()
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        written = self.file.tell()
        self.file.close()
        if written != self.expected_size:
            raise MergeError(f"{self.path}: wrote {written} bytes, header promises {self.expected_size}")


def write_index(out: pathlib.Path, weight_map: dict[str, str], total_size: int) -> None:
    """model.safetensors.index.json for a sharded output."""
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    (out / SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")


def copy_side_files(base: pathlib.Path, out: pathlib.Path) -> list[str]:
    """Copies config, generation config and tokenizer files from the base folder; returns their names."""
    copied = []
    for pattern in COPIED_FROM_BASE:
        for path in sorted(base.glob(pattern)):
            if path.is_file() and path.name != SAFE_WEIGHTS_INDEX_NAME:
                shutil.copy2(path, out / path.name)
                copied.append(path.name)
    return copied
