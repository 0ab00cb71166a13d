"""The one batch path: packed rows hold every sequence once, apart, and train exactly as unpacked rows."""

import importlib
import json

import numpy as np
import pytest

from alignax.train import feed as feed_lib
from alignax.train import modeling
from alignax.train.loop import train


def tiny(name="dpo", **overrides):
    config = importlib.import_module(f"configs.{name}").get_config("tiny")
    config.update_from_flattened_dict(overrides)
    return config


@pytest.fixture(scope="module")
def tokenizer():
    return modeling.load_tokenizer(tiny().model)


def test_packed_rows_hold_every_sequence_once(tokenizer):
    # Rows of 128 or 256 tokens hold several of the built-in sequences (46-60 tokens with the chat
    # template); with buckets of 128 no row length holds just one without padding half of it.
    config = tiny(**{"data.shuffle": False, "batch_size": 8, "data.max_length": 256, "data.length_multiple": 128})
    packed = next(feed_lib.make_feed(config, tokenizer, split="train", rows_multiple=1))
    config.data.packing = False
    plain = next(feed_lib.make_feed(config, tokenizer, split="train", rows_multiple=1))
    num_sequences = 2 * config.batch_size
    assert plain["input_ids"].shape[0] == num_sequences
    assert packed["input_ids"].shape[0] < num_sequences  # the point of packing: fewer rows
    assert packed["input_ids"].shape[0] % (num_sequences // 8) == 0  # whole eighths of the unpacked rows
    seen = []
    for row in range(packed["input_ids"].shape[0]):
        for slot, sequence in enumerate(packed["sequence_index"][row]):
            if sequence < 0:
                continue
            in_segment = packed["segment_ids"][row] == slot + 1
            seen.append(int(sequence))
            plain_row = int(np.flatnonzero(plain["sequence_index"][:, 0] == sequence)[0])
            plain_tokens = plain["segment_ids"][plain_row] > 0
            np.testing.assert_array_equal(
                packed["input_ids"][row][in_segment], plain["input_ids"][plain_row][plain_tokens]
            )
            np.testing.assert_array_equal(
                packed["loss_mask"][row][in_segment], plain["loss_mask"][plain_row][plain_tokens]
            )
            np.testing.assert_array_equal(packed["positions"][row][in_segment], np.arange(in_segment.sum()))
            for key in [k for k in plain if k.startswith("field/")]:
                assert packed[key][row, slot] == plain[key][plain_row, 0], key
    assert sorted(seen) == list(range(num_sequences))


def test_packed_layout_pads_no_more_than_unpacked(tokenizer):
    # Sequences longer than half of max_length do not pair up in rows of max_length; the feed then
    # takes longer rows (or the longest bucket) rather than padding every row to max_length.
    config = tiny(**{"data.shuffle": False, "batch_size": 8, "data.max_length": 96, "data.length_multiple": 32})
    feed = feed_lib.make_feed(config, tokenizer, split="train", rows_multiple=1)
    config.data.packing = False
    plain_feed = feed_lib.make_feed(config, tokenizer, split="train", rows_multiple=1)
    for _ in range(3):
        packed, plain = next(feed), next(plain_feed)
        real = int((packed["segment_ids"] > 0).sum())
        assert real == int((plain["segment_ids"] > 0).sum())
        # (Rows of max_length = 96 would hold one 46-60-token sequence each: 16 x 96 = 1536 cells.)
        assert packed["input_ids"].size <= plain["input_ids"].size


@pytest.mark.parametrize("name", ["dpo", "sft", "kto"])
def test_packed_and_unpacked_training_agree(tmp_path, name):
    """Same losses and gradient norms step by step: segments keep packed sequences apart."""
    records = {}
    for packing in (True, False):
        workdir = tmp_path / f"packing_{packing}"
        config = tiny(
            name,
            total_steps=2,
            checkpoint_every=100,
            eval_batches=0,
            export=False,
            **{"data.packing": packing, "data.max_length": 160},
        )
        train(config, str(workdir))
        records[packing] = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    packed, plain = records[True], records[False]
    np.testing.assert_allclose([r["loss"] for r in packed], [r["loss"] for r in plain], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose([r["grad_norm"] for r in packed], [r["grad_norm"] for r in plain], rtol=1e-4)
    assert [r["num_tokens"] for r in packed] == [r["num_tokens"] for r in plain]
