"""Readers: JSONL, Parquet, TFDS and built-in data into validated examples of one task schema.

    dataset = load_dataset("prefs.jsonl", task="preference", on_error="skip")
    dataset.examples, dataset.report.summary()

Sources: a `.jsonl` / `.json` file (one JSON object per line), a `.parquet` file, a prepared TFDS
directory (`tfds:/path/to/name/1.0.0` with `split=`), a glob or list of those, a built-in name
(`builtin:arith_pairs/train`) or a Hugging Face hub data set (`hf://HuggingFaceH4/ultrafeedback_binarized:train_prefs`,
its Parquet or JSONL files of one split through huggingface_hub's cache; see `hub_dataset_files`). Every record is parsed on its own: a bad line raises a `DataError`
naming the file and line (`on_error="error"`) or is skipped and counted (`on_error="skip"`).
A file without any record is always an error naming it. `LoadedDataset.examples` remembers each
example's file and line, so later stages (tokenization, length limits) can name them too.
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import json
import os
import re
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


# ----------------------------------------------------------------------------- hub data sets

HF_PREFIX = "hf://"
DEFAULT_HUB_SPLIT = "train"
_HF_SOURCE = re.compile(
    r"^hf://(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?)"
    r"(?:@(?P<revision>[^:@]+))?(?::(?P<split>[^:@]+))?$"
)
# A split's file name: `train-00000-of-00001[-hash].parquet` (push_to_hub), `train.jsonl`; a bare
# number (`0000.parquet`) is a shard of the folder it is in (`default/train/`, refs/convert/parquet).
_SHARD = re.compile(r"^(?P<split>.+?)-\d+(?:-of-\d+)?(?:-[0-9a-f]+)?\.(?P<ext>parquet|jsonl)$")
_WHOLE = re.compile(r"^(?P<split>.+)\.(?P<ext>parquet|jsonl)$")


class HubDatasetNotFound(FileNotFoundError):
    """An `hf://` data set (or its split) that is not in the local cache (offline) or cannot be fetched."""


class HubSplitNotFound(HubDatasetNotFound):
    """An `hf://` data set without the requested split; `available` lists the splits it has."""

    def __init__(self, message: str, available: Sequence[str] = ()):
        super().__init__(message)
        self.available = list(available)


def parse_hub_source(source: str) -> tuple[str, str | None, str | None, str]:
    """`hf://ORG/NAME[@REVISION][:SPLIT]` -> (repo id, revision, config, split). SPLIT may be
    `CONFIG/SPLIT` to pick one configuration of a multi-config repository; it defaults to "train"."""
    m = _HF_SOURCE.match(source)
    if not m or ".." in source:
        raise ValueError(
            f"bad hub data source {source!r}: expected hf://ORG/NAME[:SPLIT] "
            "(e.g. hf://HuggingFaceH4/ultrafeedback_binarized:train_prefs)"
        )
    spec = m["split"] or DEFAULT_HUB_SPLIT
    config, _, split = spec.rpartition("/")
    return m["repo"], m["revision"], config or None, split


def _split_of(name: str) -> tuple[str, str, str] | None:
    """(config, split, format) of a repository file that holds data of a split, else None.
    `config` is the folder that groups one configuration's files ("" at the root or in data/)."""
    parts = name.split("/")
    base, folders = parts[-1], parts[:-1]
    if any(p.startswith(".") for p in parts):
        return None
    m = _SHARD.match(base) or _WHOLE.match(base)
    if not m:
        return None
    split, ext = m["split"], m["ext"]
    if split.isdigit():  # refs/convert/parquet: CONFIG/SPLIT/0000.parquet
        if not folders:
            return None
        split, folders = folders[-1], folders[:-1]
    if folders and folders[-1] == "data":
        folders = folders[:-1]
    return "/".join(folders), split, ext


def select_split_files(names, split: str, config: str | None = None) -> list[str]:
    """The repository files (of `names`, paths relative to the repo root) holding `split`: Parquet
    when the split has Parquet files, else JSONL. HubSplitNotFound lists the splits there are; a
    split found in several configurations must name one (`CONFIG/SPLIT`)."""
    found: dict[tuple[str, str], dict[str, list[str]]] = {}
    for name in names:
        info = _split_of(name)
        if info is not None:
            cfg, sp, ext = info
            found.setdefault((cfg, sp), {}).setdefault(ext, []).append(name)
    splits = sorted({sp for _, sp in found})
    configs = sorted({cfg for cfg, sp in found if sp == split and (config is None or cfg == config)})
    if not configs:
        where = f" in configuration {config!r}" if config is not None else ""
        raise HubSplitNotFound(f"split {split!r}{where} not found; splits: {', '.join(splits) or 'none'}", splits)
    if len(configs) > 1:
        raise HubSplitNotFound(
            f"split {split!r} is in several configurations ({', '.join(repr(c) for c in configs)}): "
            f"name one as CONFIG/{split}",
            splits,
        )
    by_format = found[(configs[0], split)]
    return sorted(by_format.get("parquet") or by_format["jsonl"])


def _fetch_hint(repo_id: str) -> str:
    return (
        f"Fetch it on a machine with network access (`huggingface-cli download --repo-type dataset {repo_id}`, "
        f"or unset HF_HUB_OFFLINE), point HF_HUB_CACHE at a cache that holds it, or point data.train / "
        f"data.eval at local .jsonl or .parquet files instead."
    )


def hub_dataset_files(source: str) -> list[str]:
    """The local files of an `hf://` source's split, through huggingface_hub's cache (the same cache
    and HF_HUB_OFFLINE rule as model hub ids, alignax/models/hub.py).

    Online, the repository's file list picks the split's files and only those are downloaded
    (`snapshot_download(allow_patterns=...)`); offline (HF_HUB_OFFLINE=1), the cached snapshot
    (`datasets--ORG--NAME/snapshots/REV/`) is read. Layouts: `data/SPLIT-00000-of-00001.parquet`,
    `CONFIG/SPLIT-*.parquet`, `CONFIG/SPLIT/*.parquet` (refs/convert/parquet), `SPLIT.jsonl`,
    `data/SPLIT-*.jsonl`. Not cached offline (or not downloadable): HubDatasetNotFound saying how
    to fetch it; no such split: HubSplitNotFound listing the splits found."""
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from alignax.models import hub

    repo_id, revision, config, split = parse_hub_source(source)
    cache, local_only = hub.cache_dir(), hub.offline()
    label = f"hub data set {repo_id!r}" + (f" (revision {revision!r})" if revision else "")
    names, online_error = None, None
    if not local_only:
        try:
            names = huggingface_hub.HfApi().list_repo_files(repo_id, repo_type="dataset", revision=revision)
        except (HfHubHTTPError, OSError) as e:  # no network, unknown or gated repo: the cache may still hold it
            online_error = e
    if names is None:
        try:
            snapshot = huggingface_hub.snapshot_download(
                repo_id, repo_type="dataset", revision=revision, cache_dir=cache, local_files_only=True
            )
        except (LocalEntryNotFoundError, OSError) as e:
            reason = (
                f"{label} is not in the local cache {cache} and HF_HUB_OFFLINE=1"
                if local_only
                else f"cannot list {label} ({type(online_error).__name__}: {online_error}) and it is not in {cache}"
            )
            raise HubDatasetNotFound(f"{reason}. {_fetch_hint(repo_id)}") from e
        names = [
            os.path.relpath(os.path.join(folder, f), snapshot).replace(os.sep, "/")
            for folder, _, filenames in os.walk(snapshot, followlinks=True)
            for f in filenames
        ]
        try:
            selected = select_split_files(names, split, config)
        except HubSplitNotFound as e:
            raise HubSplitNotFound(
                f"{label}, local cache {cache}: {e} (only what is cached; online, the repository's own list "
                f"is used). {_fetch_hint(repo_id)}",
                e.available,
            ) from None
        return [os.path.join(snapshot, name) for name in selected]
    try:
        selected = select_split_files(names, split, config)
    except HubSplitNotFound as e:
        raise HubSplitNotFound(f"{label}: {e}", e.available) from None
    try:
        snapshot = huggingface_hub.snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            cache_dir=cache,
            allow_patterns=[globlib.escape(name) for name in selected],
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        raise HubDatasetNotFound(
            f"cannot download {label} into {cache}: {type(e).__name__}: {e}. {_fetch_hint(repo_id)}"
        ) from e
    return [os.path.join(snapshot, name) for name in selected]


def _resolve(source: str) -> list[tuple[str, str]]:
    """(kind, path) pairs for a source string."""
    if source.startswith(HF_PREFIX):
        return [("parquet" if path.endswith(".parquet") else "jsonl", path) for path in hub_dataset_files(source)]
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
                f"unknown data format for {path!r}: expected .jsonl, .parquet, a TFDS directory, builtin:NAME "
                "or hf://ORG/NAME[:SPLIT]"
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
    """Read and validate every record of `sources` (a path, glob, builtin:NAME, tfds:DIR,
    hf://ORG/NAME[:SPLIT] or a list). `split` is the TFDS split; an hf:// source names its own."""
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
