"""The Flax Llama family against transformers (torch, fp32) on the same random weights.

Each reference model is built by transformers from a tiny random config, saved with
save_pretrained(safe_serialization=True) and loaded by alignax.models.hf_io, so these tests also
exercise the checkpoint reader. Error metric: max|a - b| / max|b|.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from helpers import TINY_HF_CONFIG  # noqa: E402

from alignax.models import hf_io  # noqa: E402
from alignax.models.config import LlamaConfig  # noqa: E402
from alignax.models.llama import Llama, positions_from_segments  # noqa: E402

TOL = 1e-4
SEQ = 12


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _hf_config(kind):
    common = dict(TINY_HF_CONFIG)
    if kind == "llama":
        return transformers.LlamaConfig(**common)
    if kind == "tied":
        return transformers.LlamaConfig(**common, tie_word_embeddings=True, rope_theta=1e5)
    if kind == "llama3":
        return transformers.LlamaConfig(
            **{**common, "max_position_embeddings": 256},
            rope_theta=5e5,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        )
    if kind == "linear":
        return transformers.LlamaConfig(**common, rope_scaling={"rope_type": "linear", "factor": 4.0})
    if kind == "dynamic":  # max_position_embeddings < SEQ, so the NTK base really changes
        return transformers.LlamaConfig(
            **{**common, "max_position_embeddings": 8}, rope_scaling={"rope_type": "dynamic", "factor": 2.0}
        )
    if kind == "mistral":  # window shorter than the sequence; head_dim != hidden / heads
        return transformers.MistralConfig(**common, sliding_window=5, head_dim=8)
    raise ValueError(kind)


def _randomize(torch_model, seed):
    """Weights far from init (norm gains around 1) so that every term matters in the comparison."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(1.0 + 0.2 * noise if "norm" in name else 0.15 * noise)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """kind -> (folder, torch model); built lazily so each test pays only for what it uses."""
    cache = {}

    def get(kind):
        if kind not in cache:
            torch.manual_seed(0)
            cfg = _hf_config(kind)
            model = transformers.AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
            _randomize(model, seed=len(cache) + 1)
            model.eval()
            folder = tmp_path_factory.mktemp(kind)
            model.save_pretrained(folder, safe_serialization=True)
            cache[kind] = (folder, model)
        return cache[kind]

    return get


@pytest.fixture(scope="module")
def tokens():
    return np.random.RandomState(0).randint(3, 256, size=(2, SEQ)).astype(np.int32)


def _torch_logits(model, ids, **kwargs):
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(ids, np.int64)), **kwargs)


@pytest.mark.parametrize("kind", ["llama", "tied", "llama3", "mistral", "linear", "dynamic"])
def test_logits_match_transformers(checkpoints, tokens, kind):
    folder, torch_model = checkpoints(kind)
    model = hf_io.load_hf_model(folder)
    assert model.cfg.architecture == torch_model.config.architectures[0]
    logits = model(jnp.asarray(tokens))
    assert logits.dtype == jnp.float32 and logits.shape == (2, SEQ, 256)
    reference = _torch_logits(torch_model, tokens).logits.numpy()
    assert rel_err(logits, reference) < TOL


def test_sliding_window_changes_logits(checkpoints, tokens):
    """The Mistral window really is active at this length (else the test above proves nothing)."""
    folder, _ = checkpoints("mistral")
    windowed = hf_io.load_hf_model(folder)
    full = hf_io.load_hf_model(folder, sliding_window=None)
    assert rel_err(full(jnp.asarray(tokens)), windowed(jnp.asarray(tokens))) > 1e-3


def test_exit_layer_logits_match_transformers_hidden_states(checkpoints, tokens):
    folder, torch_model = checkpoints("llama")
    model = hf_io.load_hf_model(folder)
    exits = model.hidden_states(jnp.asarray(tokens), exit_layers=[1, 2])
    out = _torch_logits(torch_model, tokens, output_hidden_states=True)
    with torch.no_grad():
        # transformers' hidden_states[l] is the residual stream after layer l, except the last entry,
        # which already has the final norm applied.
        ref_1 = torch_model.lm_head(torch_model.model.norm(out.hidden_states[1])).numpy()
        ref_2 = torch_model.lm_head(out.hidden_states[2]).numpy()
    assert rel_err(model.logits_from_hidden(exits[1]), ref_1) < TOL
    assert rel_err(model.logits_from_hidden(exits[2]), ref_2) < TOL
    np.testing.assert_allclose(
        model.logits_from_hidden(model.hidden_states(jnp.asarray(tokens))),
        model(jnp.asarray(tokens)),
        rtol=1e-6,
        atol=1e-6,
    )


def test_packed_segments_equal_separate_sequences(checkpoints, tokens):
    folder, _ = checkpoints("mistral")  # with a sliding window, so it is also honoured across packing
    model = hf_io.load_hf_model(folder)
    lengths = (5, 4, 3)
    segment_ids = np.concatenate([np.full(n, i + 1) for i, n in enumerate(lengths)])[None].astype(np.int32)
    packed = model(jnp.asarray(tokens[:1]), segment_ids=jnp.asarray(segment_ids))
    start = 0
    for n in lengths:
        alone = model(jnp.asarray(tokens[:1, start : start + n]))
        assert rel_err(packed[:, start : start + n], alone) < TOL
        start += n
    # Default positions restart in every segment.
    np.testing.assert_array_equal(
        positions_from_segments(jnp.asarray(segment_ids))[0], np.concatenate([np.arange(n) for n in lengths])
    )


@pytest.mark.parametrize("kind", ["llama", "mistral"])
def test_kv_cache_prefill_and_steps_equal_full_forward(checkpoints, kind):
    """Left-padded batch: prefill, then one-token steps; each row against its unpadded full forward."""
    folder, _ = checkpoints(kind)
    model = hf_io.load_hf_model(folder)
    rng = np.random.RandomState(1)
    prompt_lengths, prompt_width, steps = (5, 8), 8, 4
    sequences = [rng.randint(3, 256, size=n + steps).astype(np.int32) for n in prompt_lengths]
    prompt = np.zeros((2, prompt_width), np.int32)
    segment_ids = np.zeros((2, prompt_width), np.int32)
    for row, (seq, n) in enumerate(zip(sequences, prompt_lengths)):
        prompt[row, prompt_width - n :] = seq[:n]
        segment_ids[row, prompt_width - n :] = 1
    cache = model.init_cache(2, prompt_width + steps + 3)
    prefill_logits, cache = model(jnp.asarray(prompt), segment_ids=jnp.asarray(segment_ids), cache=cache)
    step_logits = []
    for t in range(steps):
        next_ids = np.array([[seq[n + t]] for seq, n in zip(sequences, prompt_lengths)], np.int32)
        logits, cache = model(jnp.asarray(next_ids), segment_ids=jnp.ones((2, 1), jnp.int32), cache=cache)
        step_logits.append(logits[:, 0])
    assert int(cache["index"]) == prompt_width + steps
    with pytest.raises(ValueError, match="KV cache overflow"):
        model(jnp.zeros((2, 4), jnp.int32), cache=cache)
    for row, (seq, n) in enumerate(zip(sequences, prompt_lengths)):
        full = np.asarray(model(jnp.asarray(seq[None])))[0]
        assert rel_err(prefill_logits[row, prompt_width - n :], full[:n]) < TOL
        assert rel_err(jnp.stack([s[row] for s in step_logits]), full[n:]) < TOL
    np.testing.assert_array_equal(
        cache["positions"][0, prompt_width - prompt_lengths[0] : prompt_width + steps],
        np.arange(prompt_lengths[0] + steps),
    )


def test_remat_and_scan_equal_plain(checkpoints, tokens):
    folder, _ = checkpoints("llama")
    plain = hf_io.load_hf_model(folder)
    reference = plain(jnp.asarray(tokens))

    def loss(model):
        return jnp.mean(jax.nn.log_softmax(model(jnp.asarray(tokens)))[..., 7])

    plain_grad = nnx.grad(loss)(plain)
    for overrides in (dict(remat=True), dict(scan_layers=True), dict(scan_layers=True, remat=True)):
        model = hf_io.load_hf_model(folder, **overrides)
        np.testing.assert_allclose(model(jnp.asarray(tokens)), reference, rtol=1e-5, atol=1e-5)
        grad = nnx.grad(loss)(model)
        q_plain = plain_grad["model"]["layers"][1]["self_attn"]["q_proj"]["kernel"][...]
        q_grad = grad["model"]["layers"]
        q_grad = (
            q_grad["self_attn"]["q_proj"]["kernel"][...][1]
            if overrides.get("scan_layers")
            else q_grad[1]["self_attn"]["q_proj"]["kernel"][...]
        )
        assert rel_err(q_grad, q_plain) < TOL
        if overrides.get("scan_layers"):
            exits = model.hidden_states(jnp.asarray(tokens), exit_layers=[1])
            plain_exit = plain.hidden_states(jnp.asarray(tokens), exit_layers=[1])
            assert rel_err(exits[1], plain_exit[1]) < TOL
            cache = model.init_cache(2, SEQ)
            cached, _ = model(jnp.asarray(tokens), cache=cache)
            assert rel_err(cached, reference) < TOL


def test_dtype_policy(checkpoints, tokens):
    folder, _ = checkpoints("llama")
    reference = hf_io.load_hf_model(folder)(jnp.asarray(tokens))
    model = hf_io.load_hf_model(folder, dtype="bfloat16", param_dtype="bfloat16")
    assert model.model.layers[0].mlp.up_proj.kernel[...].dtype == jnp.bfloat16
    assert model.hidden_states(jnp.asarray(tokens)).dtype == jnp.bfloat16
    logits = model(jnp.asarray(tokens))
    assert logits.dtype == jnp.float32
    assert rel_err(logits, reference) < 5e-2  # bf16 rounding, same function


def test_config_round_trip_and_tiny():
    cfg = LlamaConfig.tiny(rope_scaling={"type": "linear", "factor": 2.0})
    assert cfg.rope_type == "linear" and cfg.head_dim == 16 and cfg.num_key_value_heads == 2
    again = LlamaConfig.from_hf(cfg.to_hf())
    assert again == cfg
    hf = transformers.LlamaConfig(**cfg.to_hf())
    assert hf.head_dim == cfg.head_dim and hf.rope_scaling["factor"] == 2.0
    assert dataclasses.replace(cfg, remat=True).remat
    model = Llama(LlamaConfig.tiny(), rngs=nnx.Rngs(0))
    assert model.lm_head_weight().shape == (64, 256)
    with pytest.raises(ValueError, match="architecture"):
        LlamaConfig.from_hf({"architectures": ["GPT2LMHeadModel"]})


def test_last_only_logits_equal_the_full_forward_last_position():
    cfg = LlamaConfig.tiny()
    model = Llama(cfg, rngs=nnx.Rngs(3))
    ids = jnp.asarray(np.random.default_rng(3).integers(0, cfg.vocab_size, size=(2, 9)), jnp.int32)
    segment_ids = jnp.asarray([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 9], jnp.int32)  # left padding
    full = model(ids, segment_ids=segment_ids)
    last = model(ids, segment_ids=segment_ids, last_only=True)
    assert last.shape == (2, 1, cfg.vocab_size)
    np.testing.assert_allclose(last, full[:, -1:], rtol=1e-6, atol=1e-6)
    cache = model.init_cache(2, 16)
    cached_logits, _ = model(ids, segment_ids=segment_ids, cache=cache, last_only=True)
    np.testing.assert_allclose(cached_logits, full[:, -1:], rtol=1e-5, atol=1e-5)
