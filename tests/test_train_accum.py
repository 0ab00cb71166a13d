"""Gradient accumulation over k micro-batches == one batch of k x the size (issue 5, "Done when").

Responses have ragged lengths (arithmetic answers and chat turns of different lengths), so SFT's
token-mean loss is only right if every micro-batch divides by the token count of the WHOLE batch
(dividing each micro-batch by its own count — the bug TRL/unsloth users kept hitting — makes these
trajectories differ at the first update). DPO averages k equal-size micro-batch means.
Single device: the comparison is about accumulation, not sharding (test_train_sharding covers that).
"""

import importlib
import json
import os

import numpy as np
import pytest

from alignax.train.loop import train

STEPS = 5


def run(name, workdir, **overrides):
    config = importlib.import_module(f"configs.{name}").get_config("tiny")
    config.update_from_flattened_dict(
        {
            "total_steps": STEPS,
            "export": False,
            "data.eval": "",
            "data.length_multiple": 64,
            "checkpoint_every": 100,
            "mesh.num_devices": 1,
            **overrides,
        }
    )
    train(config, str(workdir))
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("name,batch_size,accum", [("sft", 4, 4), ("dpo", 4, 2)])
def test_accumulation_equals_large_batch(tmp_path, name, batch_size, accum):
    large = run(name, tmp_path / "large", batch_size=batch_size, grad_accum_steps=1)
    micro = run(name, tmp_path / "micro", batch_size=batch_size, grad_accum_steps=accum)
    assert len(large) == len(micro) == STEPS
    # Same examples per step; and their response lengths really are ragged within a step.
    assert [r["num_tokens"] for r in large] == [r["num_tokens"] for r in micro]
    np.testing.assert_allclose([r["loss"] for r in micro], [r["loss"] for r in large], rtol=0, atol=1e-5)
    # The gradient itself (before clipping): float32 summation order differs, hence relative 1e-4.
    np.testing.assert_allclose([r["grad_norm"] for r in micro], [r["grad_norm"] for r in large], rtol=1e-4)


def test_micro_batches_have_ragged_token_counts():
    """The premise of the SFT case: the 4 micro-batches of a step hold different token counts."""
    from alignax.train import feed as feed_lib
    from alignax.train import modeling
    from alignax.train.step import count_target_tokens

    config = importlib.import_module("configs.sft").get_config("tiny")
    config.update_from_flattened_dict({"grad_accum_steps": 4, "data.length_multiple": 64})
    batch = next(feed_lib.make_feed(config, modeling.load_tokenizer(config.model), split="train", rows_multiple=1))
    per_micro = [float(count_target_tokens({k: v[i : i + 1] for k, v in batch.items()})) for i in range(4)]
    assert len(set(per_micro)) > 1, per_micro
