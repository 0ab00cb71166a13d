"""Data layer: readers (JSONL / Parquet / TFDS / built-in), task schemas, chat-template
tokenization with loss masks and truncation, bucketing and packing, resumable iteration, and
the reference log-prob cache.

    from alignax import data
    ds = data.load_dataset("builtin:arith_pairs/train", task="preference", on_error="skip")
    tokenized = data.tokenize_dataset(ds, task="preference", tokenizer=tokenizer,
                                      truncation=data.TruncationConfig(max_length=512, max_prompt_length=256))
    batches = data.BatchIterator(tokenized, batch_size=8, layout=data.BatchLayout(mode="pack", row_length=512))
"""

from alignax.data.errors import DataError, SkipReport
from alignax.data.iterator import BatchIterator, epoch_padding_fraction
from alignax.data.packing import BatchLayout, build_batch, padding_fraction, sequence_sums, sequences_from_segment_sums
from alignax.data.readers import LoadedDataset, load_dataset, write_jsonl
from alignax.data.refcache import CacheStats, compute_reference_logps, params_fingerprint
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
from alignax.data.tokenize import TokenizedDataset, TruncationConfig, tokenize_dataset

__all__ = [
    "BatchIterator",
    "epoch_padding_fraction",
    "BatchLayout",
    "build_batch",
    "padding_fraction",
    "sequence_sums",
    "sequences_from_segment_sums",
    "CacheStats",
    "compute_reference_logps",
    "params_fingerprint",
    "TokenizedDataset",
    "TruncationConfig",
    "tokenize_dataset",
    "DataError",
    "SkipReport",
    "LoadedDataset",
    "load_dataset",
    "write_jsonl",
    "parse_record",
    "PromptExample",
    "PreferenceExample",
    "UnpairedExample",
    "SFTExample",
    "MultiSampleExample",
    "JudgmentExample",
    "FewShotExample",
]
