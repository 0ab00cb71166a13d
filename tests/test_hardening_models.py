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


# ------------------------------------------------------------------------------------------------
# GGUF: every count and size in the header is checked against the file before anything is built.
# ------------------------------------------------------------------------------------------------

def _gguf_string(text):
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _raw_gguf(path, kv_entries=b"", kv_count=0, tensor_infos=b"", tensor_count=0, data=b""):
    """A GGUF v3 file written byte by byte, so counts and lengths can lie."""
    header = b"GGUF" + struct.pack("<IQQ", 3, tensor_count, kv_count) + kv_entries + tensor_infos
    header += b"\0" * (-len(header) % 32)
    path.write_bytes(header + data)
    return path


def _assert_fails_fast(call, match, seconds=5.0):
    start = time.monotonic()
    with pytest.raises(gguf_io.GGUFError, match=match):
        call()
    assert time.monotonic() - start < seconds


def test_gguf_declaring_a_million_layers_fails_fast(tmp_path):
    import alignax.models

    path = tmp_path / "million.gguf"
    writer = gguf.GGUFWriter(os.fspath(path), "llama")
    writer.add_block_count(1_000_000)
    for setter, value in [(writer.add_context_length, 64), (writer.add_embedding_length, 64),
                          (writer.add_feed_forward_length, 128), (writer.add_head_count, 4),
                          (writer.add_vocab_size, 256)]:
        setter(value)
    rng = np.random.default_rng(0)
    writer.add_tensor("token_embd.weight", rng.standard_normal((256, 64)).astype(np.float32))
    writer.add_tensor("output_norm.weight", np.ones(64, np.float32))
    for name, shape in [("attn_norm", (64,)), ("ffn_norm", (64,)), ("attn_q", (64, 64)), ("attn_k", (64, 64)),
                        ("attn_v", (64, 64)), ("attn_output", (64, 64)), ("ffn_gate", (128, 64)),
                        ("ffn_up", (128, 64)), ("ffn_down", (64, 128))]:
        writer.add_tensor(f"blk.0.{name}.weight", rng.standard_normal(shape).astype(np.float32))
    writer.add_tensor("padding_to_2mb", np.zeros(2 * 1024 * 1024 // 4, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert os.path.getsize(path) > 2 * 1024 * 1024
    _assert_fails_fast(lambda: alignax.models.load(path), r"million\.gguf.*block_count=1000000")


def test_gguf_array_longer_than_the_file_fails_fast(tmp_path):
    # ARRAY (9) of UINT8 (0) declaring 10**12 items: GGUFReader would loop over empty reads.
    entry = _gguf_string("general.bomb") + struct.pack("<IIQ", 9, 0, 10**12) + b"\0" * 16
    path = _raw_gguf(tmp_path / "array.gguf", entry, kv_count=1)
    _assert_fails_fast(lambda: gguf_io.open_gguf(path), r"array\.gguf.*general\.bomb.*10{12} items")


def test_gguf_string_array_longer_than_the_file_fails_fast(tmp_path):
    entry = _gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 10**9) + _gguf_string("a")
    path = _raw_gguf(tmp_path / "strings.gguf", entry, kv_count=1)
    _assert_fails_fast(lambda: gguf_io.open_gguf(path), r"strings\.gguf.*tokenizer\.ggml\.tokens")


def test_gguf_string_length_beyond_the_file(tmp_path):
    entry = struct.pack("<Q", 2**40) + b"general.name"
    path = _raw_gguf(tmp_path / "key.gguf", entry, kv_count=1)
    _assert_fails_fast(lambda: gguf_io.open_gguf(path), r"key\.gguf.*metadata key #0.*2{0}1099511627776 bytes")


def test_gguf_counts_beyond_the_file(tmp_path):
    path = _raw_gguf(tmp_path / "counts.gguf", tensor_count=10**15)
    _assert_fails_fast(lambda: gguf_io.open_gguf(path), r"counts\.gguf.*declares 1000000000000000 tensors")
    path = _raw_gguf(tmp_path / "kvs.gguf", kv_count=10**15)
    _assert_fails_fast(lambda: gguf_io.open_gguf(path), r"kvs\.gguf.*declares 1000000000000000 metadata keys")


@pytest.mark.parametrize("dims", [(64, 2**20), (2**32, 2**32, 2**31, 2)])  # too big; wraps uint64 to 0
def test_gguf_tensor_shape_beyond_the_file(tmp_path, dims):
    info = _gguf_string("token_embd.weight") + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
    info += struct.pack("<IQ", 0, 0)  # F32 at offset 0
    path = _raw_gguf(tmp_path / "shape.gguf", tensor_infos=info, tensor_count=1, data=b"\0" * 4096)
    _assert_fails_fast(lambda: gguf_io.open_gguf(path), r"shape\.gguf.*tensor 'token_embd\.weight'.*data section")


def test_gguf_zero_heads_names_the_key(tmp_path):
    from tests.test_gguf import write_llama_gguf

    path = tmp_path / "zero_heads.gguf"
    write_llama_gguf(path)
    raw = bytearray(path.read_bytes())
    key = _gguf_string("llama.attention.head_count")
    at = raw.index(key) + len(key)
    assert struct.unpack_from("<I", raw, at)[0] == 4  # UINT32
    struct.pack_into("<I", raw, at + 4, 0)
    path.write_bytes(bytes(raw))
    with pytest.raises(gguf_io.GGUFError, match=r"zero_heads\.gguf.*llama\.attention\.head_count=0"):
        gguf_io.read_gguf(path)
