"""Model-file boundaries under hostile input, and the reward-model export.

Each hostile case is a small file written in tmp_path that used to hang, allocate gigabytes or
crash with an error that named nothing; each must now fail fast with an error naming the file
(and the key or tensor). The reward-model export is checked against transformers itself.
"""
import json
import os
import struct
import time

import gguf
import numpy as np
import pytest
from flax import nnx

from alignax.models import gguf_io, hf_io
from alignax.models.config import LlamaConfig
from alignax.models.llama import Llama
from alignax.models.reward_head import RewardModel, save_reward_model_hf

# ------------------------------------------------------------------------------------------------
# Reward-model export: transformers' sequence classifier must score like alignax's RewardModel.
# ------------------------------------------------------------------------------------------------


def _tiny_reward_model(seed=0):
    cfg = LlamaConfig.tiny(pad_token_id=0)
    rm = RewardModel(Llama(cfg, rngs=nnx.Rngs(seed)), rngs=nnx.Rngs(seed + 1))
    # A trained head is not the init: scale it so scores are far from what a fresh head gives.
    rm.head.kernel.value = rm.head.kernel.value * 7.0
    return rm


def _right_padded_batch(rng, lengths, width, vocab):
    ids = np.zeros((len(lengths), width), np.int32)
    segments = np.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(3, vocab, size=length)  # never the pad id 0
        segments[row, :length] = 1
    return ids, segments


def test_reward_model_export_scores_like_transformers(tmp_path):
    import torch
    import transformers

    rm = _tiny_reward_model()
    out = save_reward_model_hf(rm, None, tmp_path / "rm")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert config["num_labels"] == 1 and config["pad_token_id"] == 0

    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out, torch_dtype=torch.float32).eval()
    assert type(hf).__name__ == "LlamaForSequenceClassification"
    np.testing.assert_allclose(hf.score.weight.detach().numpy(), np.asarray(rm.head.kernel.value).T, atol=0)

    ids, segments = _right_padded_batch(np.random.default_rng(0), [11, 4, 16, 1], 16, rm.backbone.cfg.vocab_size)
    ours = np.asarray(rm(ids, segment_ids=segments))
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(ids, dtype=torch.long),
                    attention_mask=torch.tensor(segments, dtype=torch.long)).logits[:, 0].numpy()
    # Each row alone, unpadded: padding must not change the score on either side.
    alone = [float(rm(ids[i:i + 1, :n], segment_ids=segments[i:i + 1, :n])[0]) for i, n in enumerate([11, 4, 16, 1])]
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
    np.testing.assert_allclose(ours, alone, atol=1e-4)
    assert np.std(ours) > 1e-2  # the head is really used: different sequences, different scores


def test_reward_model_export_loads_back_with_its_head(tmp_path):
    rm = _tiny_reward_model(seed=3)
    save_reward_model_hf(rm, None, tmp_path / "rm")
    loaded, tokenizer = RewardModel.from_pretrained(tmp_path / "rm")
    assert tokenizer is None
    ids, segments = _right_padded_batch(np.random.default_rng(1), [9, 5], 12, rm.backbone.cfg.vocab_size)
    np.testing.assert_allclose(np.asarray(loaded(ids, segment_ids=segments)),
                               np.asarray(rm(ids, segment_ids=segments)), atol=1e-5)


def test_training_export_keeps_the_head(tmp_path):
    """alignax.train.modeling.export_hf (what the training loop calls) writes score.weight."""
    from alignax.train import modeling

    rm = _tiny_reward_model(seed=5)
    modeling.export_hf(rm, None, str(tmp_path / "export"))
    tensors = hf_io.read_checkpoint_tensors(tmp_path / "export")
    np.testing.assert_array_equal(np.asarray(tensors["score.weight"]), np.asarray(rm.head.kernel.value).T)
    assert "lm_head.weight" not in tensors


def test_annotate_reward_model_still_exports_the_class():
    from alignax.annotate.reward_model import RewardModel as Reexported

    assert Reexported is RewardModel
