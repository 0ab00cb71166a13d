"""Crash-safe files, one helper per job for the whole codebase: atomic JSONL appends, tolerant reads,
atomic rewrites (`write_atomic`).

A record is one line written by a single `os.write` on an `O_APPEND` descriptor and then
`fsync`ed, so a killed process leaves either the whole line or a truncated tail without its
newline. `read_jsonl` drops such a tail (and `repair_tail` cuts it off the file before new appends),
so a restarted job sees exactly the records that were completely written: nothing duplicated,
nothing half-read. Whole-file outputs (summaries, pair files) go through `write_atomic`
(temporary file in the same directory + `os.replace`).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import pathlib
import tempfile
from typing import Any, Iterable


def repair_tail(path: str | os.PathLike) -> int:
    """Truncates a trailing partial line (no final newline) left by a crash; returns bytes cut."""
    path = pathlib.Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return len(data) - keep


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete records of `path` ([] if absent); a partial last line is ignored.

    A malformed complete line is an error naming the file and line number (it cannot come from a
    crash during `append_jsonl`, so something else wrote it).
    """
    path = pathlib.Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    # The last element is b"" when the file ends with a newline, else a partial record.
    records = []
    for lineno, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not a JSON record ({e.msg})") from e
    return records


def append_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Appends records, one atomic write + fsync per call (all lines in one `os.write`)."""
    payload = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)
    if not payload:
        return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, payload)
        while written < len(payload):  # os.write may be partial on some filesystems
            written += os.write(fd, payload[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yields a unique temporary path beside `path` to write to; on success it replaces `path`
    atomically (readers see the old or the new file, never half), on error it is removed. For any
    writer that takes a path: np.savez, safetensors, a JSON dump."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Replaces `path` with `text` atomically (unique temporary name: safe for concurrent writers)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_jsonl_records(path: str | os.PathLike) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSONL file (`.gz` too), strictly.

    The one reader of input JSONL files (benchmark answers, judgments, predictions): a line that
    is not JSON, not an object, not UTF-8, or an unreadable file is a ValueError naming the file
    and the line. (Append-only logs of long jobs, whose last line may be cut by a kill, use the
    tolerant `read_jsonl` instead.)
    """
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{line_number}: invalid JSON ({error})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
                records.append((line_number, record))
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read ({error})") from None
    return records
