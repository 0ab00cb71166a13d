"""A bounds-checking walk over a GGUF header, run before ``gguf.GGUFReader`` parses the file.

Why: GGUFReader trusts every count in the file. Reading past the end of its memory map yields
empty arrays instead of an error, so an array declared with 10**12 elements, or a kv/tensor count
of 10**12, makes it loop (practically) forever, and tensor shapes are multiplied in uint64 (they
can wrap around). This walk reads the same layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)
with Python integers, checks each declared length against the bytes that are left, and checks that
every tensor's ``offset + shape × type size`` lies inside the data section. It touches only the
header, never allocates by a declared size, and raises ``GGUFError`` naming the file and the key or
tensor at fault.
"""

from __future__ import annotations

import mmap
import os
import struct

import gguf

GGML_MAX_DIMS = 4
MAX_ARRAY_NESTING = 4
_MAGIC = b"GGUF"
# GGUFValueType -> struct format of the scalar types.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, a one-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8  # name length, n_dims, one dim, type, offset


class GGUFError(ValueError):
    """Bad or unsupported GGUF content; the message names the file and the key or tensor."""


class _Cursor:
    """Reads little- or big-endian values from a buffer, refusing to read past its end."""

    def __init__(self, buffer, path: str, endian: str):
        self.buffer, self.path, self.endian, self.offset = buffer, path, endian, 0
        self.size = len(buffer)

    def left(self) -> int:
        return self.size - self.offset

    def need(self, nbytes: int, what: str) -> None:
        if nbytes > self.left():
            raise GGUFError(
                f"{self.path}: {what} needs {nbytes} bytes at offset {self.offset}, "
                f"but the file has {self.left()} left (truncated or corrupt header)"
            )

    def scalar(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        self.need(size, what)
        (value,) = struct.unpack_from(self.endian + fmt, self.buffer, self.offset)
        self.offset += size
        return value

    def string(self, what: str) -> str:
        length = self.scalar("Q", what)
        self.need(length, f"{what} (a string of {length} bytes)")
        raw = bytes(self.buffer[self.offset : self.offset + length])
        self.offset += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GGUFError(f"{self.path}: {what} is not UTF-8 ({e})") from e

    def skip_value(self, value_type: int, what: str, depth: int = 0):
        """Skips one metadata value; returns it when it is a scalar (for general.alignment)."""
        if value_type in _SCALARS:
            return self.scalar(_SCALARS[value_type], what)
        if value_type == _STRING:
            length = self.scalar("Q", what)
            self.need(length, f"{what} (a string of {length} bytes)")
            self.offset += length
            return None
        if value_type != _ARRAY:
            raise GGUFError(f"{self.path}: {what} has unknown value type {value_type}")
        if depth >= MAX_ARRAY_NESTING:
            raise GGUFError(f"{self.path}: {what} nests arrays more than {MAX_ARRAY_NESTING} deep")
        item_type = self.scalar("I", what)
        count = self.scalar("Q", what)
        self._skip_array(item_type, count, what, depth)
        return None

    def _skip_array(self, item_type: int, count: int, what: str, depth: int) -> None:
        if item_type in _SCALARS:  # fixed size: check and skip in one step
            self.need(count * struct.calcsize(_SCALARS[item_type]), f"{what} (an array of {count} items)")
            self.offset += count * struct.calcsize(_SCALARS[item_type])
            return
        min_item = 8 if item_type == _STRING else 12  # a length, or an item type and a count
        self.need(count * min_item, f"{what} (an array of {count} items)")
        for _ in range(count):  # at most left()/8 iterations: each item takes bytes
            self.skip_value(item_type, what, depth + 1)


def _check_counts(cursor: _Cursor, tensor_count: int, kv_count: int) -> None:
    path, left = cursor.path, cursor.left()
    if kv_count * _MIN_KV_BYTES > left:
        raise GGUFError(
            f"{path}: header declares {kv_count} metadata keys; the file can hold at most {left // _MIN_KV_BYTES}"
        )
    if tensor_count * _MIN_TENSOR_INFO_BYTES > left:
        raise GGUFError(
            f"{path}: header declares {tensor_count} tensors; the file can hold at most "
            f"{left // _MIN_TENSOR_INFO_BYTES}"
        )


def _tensor_info(cursor: _Cursor, index: int) -> tuple[str, tuple[int, ...], int, int]:
    """(name, dims, type, offset) of the next tensor info, its dims and type checked."""
    path = cursor.path
    name = cursor.string(f"tensor #{index} name")
    n_dims = cursor.scalar("I", f"tensor {name!r} n_dims")
    if not 1 <= n_dims <= GGML_MAX_DIMS:
        raise GGUFError(f"{path}: tensor {name!r} has {n_dims} dimensions (1..{GGML_MAX_DIMS} allowed)")
    dims = tuple(cursor.scalar("Q", f"tensor {name!r} shape") for _ in range(n_dims))
    if any(d < 1 for d in dims):
        raise GGUFError(f"{path}: tensor {name!r} has shape {dims} (every dimension must be positive)")
    raw_type = cursor.scalar("I", f"tensor {name!r} type")
    try:
        tensor_type = gguf.GGMLQuantizationType(raw_type)
        block_size, _ = gguf.GGML_QUANT_SIZES[tensor_type]
    except (ValueError, KeyError) as e:
        raise GGUFError(f"{path}: tensor {name!r} has unknown type {raw_type}") from e
    if dims[0] % block_size:
        raise GGUFError(
            f"{path}: tensor {name!r} row length {dims[0]} is not a multiple of the "
            f"{tensor_type.name} block size {block_size}"
        )
    offset = cursor.scalar("Q", f"tensor {name!r} offset")
    return name, dims, raw_type, offset


def _tensor_nbytes(dims: tuple[int, ...], raw_type: int) -> int:
    block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(raw_type)]
    elements = 1
    for d in dims:  # Python ints: no uint64 wrap-around
        elements *= d
    return elements // block_size * type_size


def scan_header(path: str | os.PathLike) -> dict[str, int]:
    """Checks the header of the GGUF at ``path`` against the file's size; returns
    ``{"tensor_count", "kv_count", "data_offset", "file_size"}``. Raises GGUFError naming the
    file (and key or tensor) for any count, length or tensor extent that does not fit."""
    path = os.fspath(path)
    file_size = os.path.getsize(path)
    if file_size < 24:
        raise GGUFError(f"{path}: not a GGUF file ({file_size} bytes)")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        if buffer[:4] != _MAGIC:
            raise GGUFError(f"{path}: not a GGUF file (magic {bytes(buffer[:4])!r})")
        (version,) = struct.unpack_from("<I", buffer, 4)
        endian = "<" if version & 0xFFFF else ">"  # GGUFReader's test for a byte-swapped file
        cursor = _Cursor(buffer, path, endian)
        cursor.offset = 4
        version = cursor.scalar("I", "version")
        if version not in (2, 3):
            raise GGUFError(f"{path}: GGUF version {version} is not supported (2 or 3)")
        tensor_count = cursor.scalar("Q", "tensor count")
        kv_count = cursor.scalar("Q", "metadata key count")
        _check_counts(cursor, tensor_count, kv_count)
        alignment = gguf.GGUF_DEFAULT_ALIGNMENT
        for index in range(kv_count):
            key = cursor.string(f"metadata key #{index}")
            value = cursor.skip_value(cursor.scalar("I", f"metadata {key!r} type"), f"metadata {key!r}")
            if key == "general.alignment" and isinstance(value, int) and value > 0:
                alignment = value
        infos = [_tensor_info(cursor, index) for index in range(tensor_count)]
        header_end = cursor.offset
        del cursor  # it views the mmap, which closes with the `with`
    data_offset = -(-header_end // alignment) * alignment
    _check_tensor_extents(path, infos, data_size=file_size - data_offset)
    return {"tensor_count": tensor_count, "kv_count": kv_count, "data_offset": data_offset, "file_size": file_size}


def _check_tensor_extents(path: str, infos, *, data_size: int) -> None:
    """Every tensor's bytes (shape × type size from its offset) must lie inside the data section."""
    for name, dims, raw_type, offset in infos:
        nbytes = _tensor_nbytes(dims, raw_type)
        if offset + nbytes > data_size:
            raise GGUFError(
                f"{path}: tensor {name!r} of shape {dims} "
                f"({gguf.GGMLQuantizationType(raw_type).name}) needs bytes {offset}..{offset + nbytes} "
                f"of the data section, which has {max(data_size, 0)}"
            )
