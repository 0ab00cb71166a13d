"""Data layer: readers (JSONL / Parquet / TFDS / built-in), task schemas, chat-template
tokenization with loss masks and truncation, bucketing and packing, resumable iteration, and
the reference log-prob cache.

    from alignax import data
    ds = data.load_dataset("builtin:arith_pairs/train", task="preference", on_error="skip")
"""
from alignax.data.errors import DataError, SkipReport
from alignax.data.readers import LoadedDataset, load_dataset, write_jsonl
from alignax.data.schemas import (
    FewShotExample,
    JudgmentExample,
    MultiSampleExample,
    PreferenceExample,
    PromptExample,
    SFTExample,
    UnpairedExample,
    parse_record,
)

__all__ = [
    "DataError", "SkipReport", "LoadedDataset", "load_dataset", "write_jsonl", "parse_record",
    "PromptExample", "PreferenceExample", "UnpairedExample", "SFTExample", "MultiSampleExample",
    "JudgmentExample", "FewShotExample",
]
