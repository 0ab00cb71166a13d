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
        theirs = (
            hf(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(segments, dtype=torch.long))
            .logits[:, 0]
            .numpy()
        )
    # Each row alone, unpadded: padding must not change the score on either side.
    alone = [
        float(rm(ids[i : i + 1, :n], segment_ids=segments[i : i + 1, :n])[0]) for i, n in enumerate([11, 4, 16, 1])
    ]
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
    np.testing.assert_allclose(ours, alone, atol=1e-4)
    assert np.std(ours) > 1e-2  # the head is really used: different sequences, different scores


def test_reward_model_export_loads_back_with_its_head(tmp_path):
    rm = _tiny_reward_model(seed=3)
    save_reward_model_hf(rm, None, tmp_path / "rm")
    loaded, tokenizer = RewardModel.from_pretrained(tmp_path / "rm")
    assert tokenizer is None
    ids, segments = _right_padded_batch(np.random.default_rng(1), [9, 5], 12, rm.backbone.cfg.vocab_size)
    np.testing.assert_allclose(
        np.asarray(loaded(ids, segment_ids=segments)), np.asarray(rm(ids, segment_ids=segments)), atol=1e-5
    )


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
    for setter, value in [
        (writer.add_context_length, 64),
        (writer.add_embedding_length, 64),
        (writer.add_feed_forward_length, 128),
        (writer.add_head_count, 4),
        (writer.add_vocab_size, 256),
    ]:
        setter(value)
    rng = np.random.default_rng(0)
    writer.add_tensor("token_embd.weight", rng.standard_normal((256, 64)).astype(np.float32))
    writer.add_tensor("output_norm.weight", np.ones(64, np.float32))
    for name, shape in [
        ("attn_norm", (64,)),
        ("ffn_norm", (64,)),
        ("attn_q", (64, 64)),
        ("attn_k", (64, 64)),
        ("attn_v", (64, 64)),
        ("attn_output", (64, 64)),
        ("ffn_gate", (128, 64)),
        ("ffn_up", (128, 64)),
        ("ffn_down", (64, 128)),
    ]:
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


# ------------------------------------------------------------------------------------------------
# Chat templates: code from the checkpoint, rendered under a time and size budget.
# ------------------------------------------------------------------------------------------------

TEMPLATE_BOMBS = {
    "nested_loops": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "silent_nested_loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "string_repeat": "{{ 'a' * 10**10 }}",
    "repeat_via_variable": "{% set n = 10**10 %}{{ 'a' * n }}",
    "concat_doubling": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "plus_doubling": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "huge_power": "{{ 2 ** (10 ** 10) }}",
    "center_width": "{{ 'x'|center(10**10) }}",
    "method_width": "{{ 'x'.ljust(10**10) }}",
    "format_width": "{{ '%999999999999s' % 'x' }}",
    "join_of_references": "{% set big = 'a' * 1000000 %}{{ ([big] * 100000)|join }}",
    "exponential_macro": "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
    "{{ f(60) }}",
    "output_flood": "{% for i in range(100000) %}{{ messages[0].content }}{% endfor %}",
}


@pytest.mark.parametrize("name", sorted(TEMPLATE_BOMBS))
def test_template_bomb_fails_fast_with_a_clear_error(tmp_path, name):
    from alignax.models import chat_template
    from alignax.models.tokenizer import Tokenizer

    folder = _write_tokenizer_folder(tmp_path, chat_template=TEMPLATE_BOMBS[name])
    tokenizer = Tokenizer.from_dir(folder)
    messages = [{"role": "user", "content": "y" * 1000}]
    start = time.monotonic()
    with pytest.raises(chat_template.ChatTemplateLimitError, match=r"time limit|over the limit|exceeds|bits|deeply"):
        tokenizer.render_chat(messages)
    assert time.monotonic() - start < chat_template.RENDER_TIME_LIMIT_S + 3.0


def test_template_within_budget_still_renders(tmp_path):
    from alignax.models.tokenizer import Tokenizer

    source = (
        "{% for m in messages %}{{ '<|' ~ m.role ~ '|>' }}{{ m.content|trim }}{{ '%s' % eos_token }}"
        "{{ ' ' * 2 }}{% endfor %}{{ [1, 2]|join(',') }}{{ 2 ** 10 }}"
    )
    tokenizer = Tokenizer.from_dir(_write_tokenizer_folder(tmp_path, chat_template=source))
    text = tokenizer.render_chat([{"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo"}])
    assert text == "<|user|>hi</s>  <|assistant|>yo</s>  1,21024"


# ------------------------------------------------------------------------------------------------
# config.json, tokenizer.json, shard index: errors name the file and the key.
# ------------------------------------------------------------------------------------------------


def _write_tokenizer_folder(tmp_path, *, chat_template=None):
    import tokenizers
    from tokenizers import models, pre_tokenizers

    folder = tmp_path / "tok"
    folder.mkdir(exist_ok=True)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz ")}}
    backend = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.save(os.fspath(folder / "tokenizer.json"))
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    if chat_template is not None:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def _write_tiny_checkpoint(folder):
    model = Llama(LlamaConfig.tiny(), rngs=nnx.Rngs(0))
    hf_io.save_hf(model, None, folder)
    return folder


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "key, value",
    [
        ("num_attention_heads", 0),
        ("num_key_value_heads", 0),
        ("hidden_size", "64"),
        ("rms_norm_eps", "tiny"),
        ("tie_word_embeddings", "yes"),
        ("head_dim", -2),
        ("eos_token_id", [2, "x"]),
        ("num_hidden_layers", 2.5),
    ],
)
def test_config_field_with_wrong_type_names_file_and_key(tmp_path, key, value):
    import alignax.models

    folder = _write_tiny_checkpoint(tmp_path / "ckpt")
    _edit_config(folder, **{key: value})
    with pytest.raises(hf_io.CheckpointError, match=rf"config\.json: {key}="):
        alignax.models.load(folder)


@pytest.mark.parametrize("content", ["[1, 2, 3]", '"a string"', "null", "42"])
def test_non_object_config_json_names_the_file(tmp_path, content):
    import alignax.models

    folder = _write_tiny_checkpoint(tmp_path / "ckpt")
    (folder / "config.json").write_text(content)
    with pytest.raises(hf_io.CheckpointError, match=r"ckpt/config\.json: expected a JSON object"):
        alignax.models.load(folder)


def test_config_declaring_more_layers_than_tensors_fails_fast(tmp_path):
    import alignax.models

    folder = _write_tiny_checkpoint(tmp_path / "ckpt")
    _edit_config(folder, num_hidden_layers=1_000_000)
    start = time.monotonic()
    with pytest.raises(hf_io.CheckpointError, match=r"num_hidden_layers=1000000.*model\.safetensors"):
        alignax.models.load(folder)
    assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"model": {"type": "Nope"}}', b"\xff\xfe\x00"])
def test_corrupt_tokenizer_json_names_the_file(tmp_path, content):
    from alignax.models.tokenizer import Tokenizer

    folder = _write_tokenizer_folder(tmp_path)
    (folder / "tokenizer.json").write_bytes(content)
    with pytest.raises(ValueError, match=r"tok/tokenizer\.json: not a valid tokenizers file"):
        Tokenizer.from_dir(folder)


@pytest.mark.parametrize("content", ['["not", "an", "object"]', '{"chat_template": 7}', '{"eos_token": 5}'])
def test_bad_tokenizer_config_names_the_file(tmp_path, content):
    from alignax.models.tokenizer import Tokenizer

    folder = _write_tokenizer_folder(tmp_path)
    (folder / "tokenizer_config.json").write_text(content)
    with pytest.raises(ValueError, match=r"tok/tokenizer_config\.json: "):
        Tokenizer.from_dir(folder)


def _shard_index_pointing_at(folder, shard_name):
    """Moves the single-file checkpoint's tensors behind an index whose shard name is hostile."""
    tensors = hf_io.read_safetensors(folder / "model.safetensors")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {name: shard_name for name in tensors}})
    )


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_shard_path_escaping_the_model_folder_is_refused(tmp_path, kind):
    import alignax.models

    outside = _write_tiny_checkpoint(tmp_path / "outside")  # a real, loadable file outside the folder
    folder = _write_tiny_checkpoint(tmp_path / "ckpt")
    target = outside / "model.safetensors"
    if kind == "dotdot":
        shard = "../outside/model.safetensors"
    elif kind == "absolute":
        shard = os.fspath(target)
    else:
        os.symlink(target, folder / "linked.safetensors")
        shard = "linked.safetensors"
    _shard_index_pointing_at(folder, shard)
    with pytest.raises(hf_io.CheckpointError, match=rf"index\.json: shard '{shard}' is outside the model folder"):
        alignax.models.load(folder)


def test_shard_inside_the_model_folder_still_loads(tmp_path):
    import alignax.models

    folder = _write_tiny_checkpoint(tmp_path / "ckpt")
    (folder / "sub").mkdir()
    os.replace(folder / "model.safetensors", folder / "sub" / "part-1.safetensors")
    _shard_index_pointing_at_sub = {
        name: "sub/part-1.safetensors" for name in hf_io.read_safetensors(folder / "sub" / "part-1.safetensors")
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": _shard_index_pointing_at_sub}))
    model, _ = alignax.models.load(folder)
    assert model.cfg.num_hidden_layers == 2
