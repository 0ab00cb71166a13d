"""Resumable, sharded iteration and the reference log-prob cache."""

import collections
import json
import os

import numpy as np
import pytest

from alignax.data.errors import SkipReport
from alignax.data.iterator import BatchIterator
from alignax.data.packing import BatchLayout, sequence_sums_np
from alignax.data.refcache import CacheStats, compute_reference_logps
from alignax.data.tokenize import TokenizedDataset, TokenizedExample, TokenizedSequence


def make_dataset(n=40, seed=0, fingerprint="ds"):
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        seqs = []
        for _ in range(2):
            length = int(rng.integers(6, 40))
            mask = np.r_[np.zeros(4), np.ones(length - 4)].astype(np.int32)
            seqs.append(
                TokenizedSequence(
                    input_ids=rng.integers(3, 256, length).astype(np.int32), loss_mask=mask, prompt_length=4
                )
            )
        examples.append(TokenizedExample(index=i, id=str(i), sequences=tuple(seqs), scalars={}))
    return TokenizedDataset(
        task="preference",
        side_names=("chosen", "rejected"),
        examples=examples,
        stats=collections.Counter(),
        report=SkipReport(),
        fingerprint=fingerprint,
    )


LAYOUT = BatchLayout(mode="pack", row_length=64, row_multiple=2)


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_resume_yields_the_same_batches():
    ds = make_dataset()
    straight = take(BatchIterator(ds, batch_size=4, layout=LAYOUT, seed=3, sort_window=2), 25)  # crosses 2 epoch ends
    it = BatchIterator(ds, batch_size=4, layout=LAYOUT, seed=3, sort_window=2)
    first = take(it, 13)
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
    resumed = BatchIterator(ds, batch_size=4, layout=LAYOUT, seed=3, sort_window=2)
    resumed.set_state(state)
    assert_same_batches(first + take(resumed, 12), straight)
    # Epochs differ in order; a different seed gives a different order.
    e0 = np.concatenate([b["example_index"] for b in straight[:10]])
    e1 = np.concatenate([b["example_index"] for b in straight[10:20]])
    assert sorted(e0) == sorted(e1) == list(range(40)) and not np.array_equal(e0, e1)
    other = take(BatchIterator(ds, batch_size=4, layout=LAYOUT, seed=4), 1)[0]
    assert not np.array_equal(other["example_index"], straight[0]["example_index"])
    with pytest.raises(ValueError, match="different settings"):
        BatchIterator(ds, batch_size=5, layout=LAYOUT, seed=3).set_state(state)


def test_hosts_get_disjoint_slices_with_equal_shapes():
    ds = make_dataset(n=42)
    hosts = [
        BatchIterator(ds, batch_size=4, layout=LAYOUT, seed=1, process_index=p, process_count=2, num_epochs=1)
        for p in range(2)
    ]
    batches = [list(h) for h in hosts]
    assert len(batches[0]) == len(batches[1]) == 42 // 8
    seen = []
    for b0, b1 in zip(*batches):
        assert b0["input_ids"].shape == b1["input_ids"].shape  # one global array
        seen += list(b0["example_index"]) + list(b1["example_index"])
    assert len(seen) == len(set(seen)) == 40
    # Together the hosts see what one host with the global batch size sees.
    single = list(BatchIterator(ds, batch_size=8, layout=LAYOUT, seed=1, num_epochs=1))
    for (b0, b1), s in zip(zip(*batches), single):
        np.testing.assert_array_equal(np.r_[b0["example_index"], b1["example_index"]], s["example_index"])


def fake_reference(batch):
    """A deterministic stand-in for a reference model: per-token 'log-probs' from the labels."""
    token_values = -np.log1p(batch["labels"].astype(np.float64) % 7 + 1)
    sums = sequence_sums_np(token_values, batch, 2)
    return {"chosen_logps": sums[0], "rejected_logps": sums[1]}


def expected_reference(ds):
    out = np.zeros((2, len(ds.examples)))
    for i, e in enumerate(ds.examples):
        for k, s in enumerate(e.sequences):
            out[k, i] = (-np.log1p(s.input_ids[1:] % 7 + 1) * s.loss_mask[1:]).sum()
    return out


def test_refcache_reused_invalidated_and_resumable(tmp_path):
    ds = make_dataset(n=37)
    calls = collections.Counter()

    def logps_fn(batch):
        calls["n"] += 1
        return fake_reference(batch)

    kw = dict(cache_dir=str(tmp_path), batch_size=4, layout=LAYOUT, shard_size=10)
    stats = CacheStats()
    ref = compute_reference_logps(ds, logps_fn, model_id="model-a", stats=stats, **kw)
    np.testing.assert_allclose(ref, expected_reference(ds), rtol=1e-5)
    assert stats.shards_computed == 4 and stats.examples_computed == 37 and calls["n"] == 3 + 3 + 3 + 2

    # Second run: nothing computed.
    calls.clear()
    stats = CacheStats()
    np.testing.assert_array_equal(compute_reference_logps(ds, logps_fn, model_id="model-a", stats=stats, **kw), ref)
    assert calls["n"] == 0 and stats.examples_computed == 0 and stats.shards_loaded == 4

    # A different model, or different tokenized data (tokenizer / truncation change the dataset
    # fingerprint), computes afresh.
    for model_id, data in (("model-b", ds), ("model-a", make_dataset(n=37, fingerprint="other-truncation"))):
        stats = CacheStats()
        compute_reference_logps(data, logps_fn, model_id=model_id, stats=stats, **kw)
        assert stats.examples_computed == 37 and stats.shards_loaded == 0

    # Interrupted pass: the model fails in the third shard; rerunning computes only what is missing.
    def failing(batch):
        calls["fail"] += 1
        if calls["fail"] == 7:
            raise RuntimeError("preempted")
        return fake_reference(batch)

    with pytest.raises(RuntimeError, match="preempted"):
        compute_reference_logps(ds, failing, model_id="model-c", **kw)
    cache_dirs = [d for d in os.listdir(tmp_path)]
    assert all(not f.endswith(".npz") or f.startswith("shard_") for d in cache_dirs for f in os.listdir(tmp_path / d))
    assert not any(".tmp" in f for d in cache_dirs for f in os.listdir(tmp_path / d))
    stats = CacheStats()
    resumed = compute_reference_logps(ds, logps_fn, model_id="model-c", stats=stats, **kw)
    assert stats.shards_loaded == 2 and stats.shards_computed == 2 and stats.examples_computed == 17
    np.testing.assert_allclose(resumed, expected_reference(ds), rtol=1e-5)

    # The iterator carries the cached values to the batch, aligned with its examples.
    it = BatchIterator(ds, batch_size=4, layout=LAYOUT, seed=0, reference_logps=resumed)
    batch = next(it)
    np.testing.assert_allclose(batch["ref_chosen_logps"], expected_reference(ds)[0, batch["example_index"]], rtol=1e-5)
    np.testing.assert_allclose(
        batch["ref_rejected_logps"], expected_reference(ds)[1, batch["example_index"]], rtol=1e-5
    )
