"""The build and train stages: the training set on disk, then the engine on it.

Train: `alignax.train.loop.train` in DIR/iter_<k>/train (its own checkpoints: a killed train stage
resumes at the last checkpoint, data position and RNG included). Iteration k starts from
iteration k−1's export (DIR/iter_<k-1>/train/export, a Hugging Face folder); iteration 1 starts
from `config.model` (or the tiny random model of the `tiny` presets). With `reference:
on_the_fly` the engine's reference is the model the run starts from, i.e. π_t, the previous
iterate (SPPO, DNO, INPO's π_t). `iterate.reference = "initial"` (INPO's π_ref, METHODS.md §5)
stores the INITIAL model's log-probs of chosen and rejected in the records as ref_chosen_logps /
ref_rejected_logps, which the engine prefers over its on-the-fly reference
(alignax/train/methods.py pairwise_method), computed by the engine's own pass
(alignax/train/reference.py), so the tokenization is the training one.
"""

from __future__ import annotations

import copy
import math
import os

from alignax import files
from alignax.iterate import build as build_lib

FILE = "train.jsonl"


def build_stage(scored: list[dict], directory: str, *, config, iteration: int, reference_fn=None) -> dict:
    it = config.iterate
    records = build_lib.build(it.method, scored, it)
    text_keys = ("chosen", "rejected") if it.method != "expert_iteration" else ()
    kept = [
        r
        for r in records
        if all(r[k].strip() for k in text_keys) and all(m["content"].strip() for m in r.get("messages", []))
    ]
    if reference_fn is not None and kept:
        staging = os.path.join(directory, "pairs_without_reference.jsonl")
        files.write_jsonl_atomic(staging, kept)
        logps = reference_fn(staging)
        kept = [
            dict(r, ref_chosen_logps=logps[r["id"]][0], ref_rejected_logps=logps[r["id"]][1])
            for r in kept
            if r["id"] in logps
        ]
    files.write_jsonl_atomic(os.path.join(directory, FILE), kept)
    return {
        "num_records": len(kept),
        "dropped_empty": len(records) - len(kept),
        "prompts_without_pair": len(scored) - len(records),
    }


def train_config(config, *, data_path: str, start_model: str, num_records: int):
    """The engine config of one iteration: config's keys with this iteration's data and start."""
    c = copy.deepcopy(config)
    c.unlock()
    c.data.train = data_path
    c.data.eval = ""
    c.eval_batches = 0
    if start_model:
        c.model = start_model
        c.random_init.enabled = False
    if config.iterate.epochs > 0:
        c.total_steps = max(1, math.ceil(config.iterate.epochs * num_records / config.batch_size))
    c.lock()
    return c


def train_stage(directory: str, *, config, data_path: str, start_model: str, num_records: int) -> dict:
    """Trains (or resumes); with no records the iterate stays where it is (export = start)."""
    if num_records == 0:
        print(f"{directory}: no training records this iteration; the policy is unchanged")
        return {"export": start_model, "skipped": True, "train": {}}
    from alignax.train.loop import train

    summary = train(
        train_config(config, data_path=data_path, start_model=start_model, num_records=num_records), directory
    )
    return {
        "export": os.path.join(directory, "export"),
        "skipped": False,
        "train": summary.get("train", {}),
        "steps": summary.get("final_step"),
    }


def initial_logps_fn(config, initial_model, cache_dir: str):
    """records file -> {id: (log π_ref(chosen|x), log π_ref(rejected|x))} with the engine's tokenization."""

    def fn(path: str) -> dict:
        from alignax.train import feed as feed_lib
        from alignax.train import modeling
        from alignax.train import reference as reference_lib

        c = train_config(config, data_path=path, start_model="", num_records=0)
        tokenizer = modeling.load_tokenizer(config.model)
        tokenized = feed_lib.load_split(c, tokenizer, split="train")
        values = reference_lib.reference_logps(
            initial_model,
            tokenized,
            batch_size=c.eval_batch_size,
            max_length=c.data.max_length,
            length_multiple=c.data.length_multiple,
            chunk_size=c.logprob_chunk_size,
            vocab_chunk_size=c.logprob_vocab_chunk_size or None,
            cache_dir=cache_dir,
        )
        return {str(e.id): (float(values[0, i]), float(values[1, i])) for i, e in enumerate(tokenized.examples)}

    return fn
