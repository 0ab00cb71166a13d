"""Readers: JSONL, Parquet, TFDS and built-in data into validated examples of one task schema.

    dataset = load_dataset("prefs.jsonl", task="preference", on_error="skip")
    dataset.examples, dataset.report.summary()

Sources: a `.jsonl` / `.json` file (one JSON object per line), a `.parquet` file, a prepared TFDS
directory (`tfds:/path/to/name/1.0.0` with `split=`), a glob or list of those, or a built-in name
(`builtin:arith_pairs/train`). Every record is parsed on its own: a bad line raises a `DataError`
naming the file and line (`on_error="error"`) or is skipped and counted (`on_error="skip"`).
A file without any record is always an error naming it. `LoadedDataset.examples` remembers each
example's file and line, so later stages (tokenization, length limits) can name them too.
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import json
import os
from typing import Iterator, Sequence

from alignax import files
from alignax.data import schemas
from alignax.data.errors import DataError, SkipReport, check_policy, handle


class Examples(list):
    """A list of validated examples that also knows where each came from.

    `locations[i]` is example i's "file:line" / "file row N"; `sources` the sources read. It is a
    plain list otherwise, so `tokenize_dataset(loaded.examples, ...)` can name file and row.
    """

    def __init__(self, items=(), *, locations=(), sources=()):
        super().__init__(items)
        self.locations = list(locations)
        self.sources = list(sources)


@dataclasses.dataclass
class LoadedDataset:
    task: str
    examples: list
    report: SkipReport
    sources: list


def _iter_jsonl(path: str) -> Iterator[tuple[str, object]]:
    """Yield (where, raw) per non-blank line; raw is a str, or a DataError for undecodable bytes."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                yield where, DataError("non_utf8", f"line is not valid UTF-8 ({e.reason} at byte {e.start})", where)
                continue
            if text.strip():
                yield where, text


# Arrow types each task's columns must have (checked once per file, reported by column name).
def _arrow_type_problem(field, expected_kind: str) -> str | None:
    import pyarrow as pa

    t = field.type
    ok = {
        "string": pa.types.is_string(t) or pa.types.is_large_string(t),
        "bool": pa.types.is_boolean(t),
        "list": pa.types.is_list(t) or pa.types.is_large_list(t),
        "string_or_list": pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_list(t)
        or pa.types.is_large_list(t),
        "number": pa.types.is_integer(t) or pa.types.is_floating(t),
    }[expected_kind]
    return None if ok else f"column {field.name!r} has Arrow type {t}, expected {expected_kind.replace('_', ' ')}"


PARQUET_COLUMN_KINDS = {
    "prompts": {"prompt": "string_or_list"},
    "preference": {"prompt": "string_or_list", "chosen": "string_or_list", "rejected": "string_or_list"},
    "unpaired": {"prompt": "string_or_list", "completion": "string_or_list", "label": "bool"},
    "sft": {"messages": "list"},
    "multi_sample": {"prompt": "string_or_list", "responses": "list", "rewards": "list", "win_probs": "list"},
    "judgment": {"prompt": "string_or_list", "response": "string_or_list", "judgment": "string", "score": "number"},
    "few_shot": {
        "context": "list",
        "prompt": "string_or_list",
        "chosen": "string_or_list",
        "rejected": "string_or_list",
    },
}


def _iter_parquet(path: str, task: str) -> Iterator[tuple[str, object]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    problems = [
        p
        for field in table.schema
        if (kind := PARQUET_COLUMN_KINDS[task].get(field.name))
        for p in [_arrow_type_problem(field, kind)]
        if p
    ]
    if problems:
        # A column type is wrong for every row: report it once, by column, then (under "skip")
        # let each row fail validation on its own so the count is per row.
        yield f"{path}", DataError("wrong_column_type", "; ".join(problems), path)
    for i, row in enumerate(table.to_pylist()):
        yield f"{path} row {i}", row


def _resolve(source: str) -> list[tuple[str, str]]:
    """(kind, path) pairs for a source string."""
    if source.startswith("builtin:"):
        from alignax.data.builtin import builtin_path

        return [("jsonl", builtin_path(source[len("builtin:") :]))]
    if source.startswith("tfds:"):
        return [("tfds", source[len("tfds:") :])]
    paths = sorted(globlib.glob(source)) if any(c in source for c in "*?[") else [source]
    if not paths:
        raise FileNotFoundError(f"no files match {source!r}")
    out = []
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"data file not found: {path}")
        if path.endswith((".jsonl", ".json")):
            out.append(("jsonl", path))
        elif path.endswith(".parquet"):
            out.append(("parquet", path))
        elif os.path.isdir(path) and os.path.exists(os.path.join(path, "dataset_info.json")):
            out.append(("tfds", path))
        else:
            raise ValueError(
                f"unknown data format for {path!r}: expected .jsonl, .parquet, a TFDS directory or builtin:NAME"
            )
    return out


def _iter_file(kind: str, path: str, task: str, split: str) -> Iterator[tuple[str, object]]:
    if kind == "jsonl":
        yield from _iter_jsonl(path)
    elif kind == "parquet":
        yield from _iter_parquet(path, task)
    else:
        from alignax.data.tfds_io import read_tfds_records

        yield from read_tfds_records(path, split)


def iter_raw_records(source: str, *, task: str, split: str = "train") -> Iterator[tuple[str, object]]:
    """Yield (where, raw) where raw is a dict, a JSON string, or a DataError to apply the policy to.

    A file with no record at all (empty, or only blank lines) raises DataError("empty_file") naming
    it, whatever the policy: it is a wrong path or a failed export, never data to skip.
    """
    for kind, path in _resolve(source):
        count = 0
        for item in _iter_file(kind, path, task, split):
            count += 1
            yield item
        if count == 0:
            raise DataError("empty_file", "the data file contains no records", path)


def load_dataset(
    sources: str | Sequence[str], *, task: str, on_error: str = "error", split: str = "train"
) -> LoadedDataset:
    """Read and validate every record of `sources` (a path, glob, builtin:NAME, tfds:DIR or a list)."""
    check_policy(on_error)
    if task not in schemas.PARSERS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(schemas.PARSERS)}")
    sources = [sources] if isinstance(sources, str) else list(sources)
    report = SkipReport()
    examples, locations, seen_ids = [], [], {}
    for source in sources:
        for where, raw in iter_raw_records(source, task=task, split=split):
            try:
                if isinstance(raw, DataError):
                    if raw.reason == "wrong_column_type" and on_error == "skip":
                        continue  # counted per row below, where each row fails its own validation
                    raise raw
                if isinstance(raw, str):
                    try:
                        raw = json.loads(raw)
                    except json.JSONDecodeError as e:
                        raise DataError(
                            "malformed_json", f"malformed JSON ({e.msg} at column {e.colno})", where
                        ) from None
                example = schemas.parse_record(task, raw, where)
                if example.id is not None:
                    if example.id in seen_ids:
                        raise DataError(
                            "duplicate_id", f"id {example.id!r} already used at {seen_ids[example.id]}", where
                        )
                    seen_ids[example.id] = where
            except DataError as error:
                handle(error, on_error=on_error, report=report)
                continue
            examples.append(example)
            locations.append(where)
    examples = Examples(examples, locations=locations, sources=sources)
    return LoadedDataset(task=task, examples=examples, report=report, sources=sources)


def write_jsonl(records, path: str) -> None:
    """Write records (dicts or example dataclasses) as JSONL, atomically."""
    records = [schemas.example_to_record(r) if dataclasses.is_dataclass(r) else r for r in records]
    files.write_jsonl_atomic(path, records)
