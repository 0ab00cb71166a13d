"""TFDS without TensorFlow: write records with a `GeneratorBasedBuilder` (array_record files) and
read them back with `as_data_source()` + grain.

Each record is stored as one JSON string feature (`record_json`) plus its original index, so any
schema round-trips losslessly and in order (`disable_shuffling=True` keeps the write order).
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

RECORD_FEATURE = "record_json"
INDEX_FEATURE = "index"


class AlignaxRecords(tfds.core.GeneratorBasedBuilder):
    """A TFDS dataset of JSON records, one split per `splits` key."""

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, splits: dict[str, list] | None = None, **kwargs):
        self._splits = splits
        super().__init__(file_format="array_record", **kwargs)

    def _info(self):
        features = tfds.features.FeaturesDict(
            {RECORD_FEATURE: tfds.features.Text(), INDEX_FEATURE: tfds.features.Scalar(dtype=np.int64)}
        )
        return tfds.core.DatasetInfo(
            builder=self,
            features=features,
            disable_shuffling=True,
            description="alignax records stored as JSON strings",
        )

    def _split_generators(self, dl_manager):
        if self._splits is None:
            raise ValueError("AlignaxRecords needs `splits` to prepare; to read, use read_tfds(directory)")
        return {name: self._generate_examples(records) for name, records in self._splits.items()}

    def _generate_examples(self, records):
        for i, record in enumerate(records):
            yield i, {RECORD_FEATURE: json.dumps(record, ensure_ascii=False), INDEX_FEATURE: i}


def write_tfds(splits: dict[str, list], data_dir: str, *, name: str = "alignax_records") -> str:
    """Prepare a TFDS dataset from {split: [record dicts]}; returns the dataset directory."""
    builder_cls = type(name.title().replace("_", ""), (AlignaxRecords,), {"name": name})
    builder = builder_cls(splits=splits, data_dir=data_dir)
    builder.download_and_prepare()
    return builder.data_dir


def read_tfds_records(directory: str, split: str) -> Iterator[tuple[str, object]]:
    """Yield (location, record) from a prepared TFDS directory, decoded through a grain MapDataset.

    Records written by `write_tfds` are JSON strings; other TFDS datasets are yielded as their
    feature dicts (bytes decoded to str), so their feature names must match the task's keys.
    """
    import grain  # imported lazily: only the TFDS reader needs it

    builder = tfds.builder_from_directory(directory)
    source = builder.as_data_source(split=split)
    dataset = grain.MapDataset.source(source)
    label = f"tfds:{os.path.basename(os.path.dirname(directory.rstrip('/')))}/{split}"
    for i in range(len(dataset)):
        item = dataset[i]
        where = f"{label} index {i}"
        if RECORD_FEATURE in item:
            raw = item[RECORD_FEATURE]
            yield where, (raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        else:
            yield where, {k: _decode(v) for k, v in item.items()}


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    return value
