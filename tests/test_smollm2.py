"""Parity on the real SmolLM2-135M-Instruct (Q4_1 GGUF): alignax vs transformers, both float32,
both dequantizing the same file. Slow: one module-scoped load of each side."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import alignax.models as models  # noqa: E402

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Why is the sky blue?"},
    ],
    [{"role": "user", "content": "Write a Python function that adds two numbers."}],
    [
        {"role": "user", "content": "List three fruits."},
        {"role": "assistant", "content": "Apple, banana, cherry."},
        {"role": "user", "content": "Now three vegetables, please."},
    ],
]
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return models.presets.resolve("smollm2-135m-instruct")
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def ours(gguf_path):
    return models.load("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def theirs(gguf_path):
    folder, name = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    return model


@pytest.fixture(scope="module")
def prompt_ids(ours):
    _, tokenizer = ours
    return [tokenizer.apply_chat_template(p, add_generation_prompt=True) for p in PROMPTS]


def right_padded(sequences, pad_id):
    """ids [B, T] and segment_ids [B, T] (1 = token, 0 = padding) for ragged sequences."""
    length = max(map(len, sequences))
    ids = np.full((len(sequences), length), pad_id, np.int32)
    segments = np.zeros((len(sequences), length), np.int32)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        segments[row, : len(seq)] = 1
    return jnp.asarray(ids), jnp.asarray(segments)


def torch_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def max_relative_error(actual, reference):
    """max |a - r| / max |r|: the error relative to the logits' scale (elementwise ratios blow
    up where logits cross zero)."""
    return float(np.max(np.abs(actual - reference)) / np.max(np.abs(reference)))


def test_logits_match_transformers(ours, theirs, prompt_ids):
    model, tokenizer = ours
    ids, segments = right_padded(prompt_ids, tokenizer.pad_token_id)
    logits = np.asarray(model(ids, segment_ids=segments))  # one batch, padding masked
    for row, seq in enumerate(prompt_ids):
        reference = torch_logits(theirs, seq)
        error = max_relative_error(logits[row, : len(seq)], reference)
        assert error < 1e-4, (row, error)


def greedy_generate(model, prompts, *, max_new_tokens, pad_id):
    """Greedy decoding with the KV cache: one right-padded prefill for all prompts, then one token
    per step. Each row's first new token comes from its last prompt position."""
    graphdef, state = nnx.split(model)
    ids, segments = right_padded(prompts, pad_id)
    lengths = jnp.asarray([len(p) for p in prompts])
    batch, prompt_length = ids.shape

    @jax.jit
    def prefill(state, ids, segments):
        m = nnx.merge(graphdef, state)
        cache = m.init_cache(batch, prompt_length + max_new_tokens)
        logits, cache = m(ids, segment_ids=segments, cache=cache)
        last = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]
        return jnp.argmax(last, -1).astype(jnp.int32), cache

    @jax.jit
    def step(state, token, cache):
        m = nnx.merge(graphdef, state)
        logits, cache = m(token[:, None], segment_ids=jnp.ones((batch, 1), jnp.int32), cache=cache)
        return jnp.argmax(logits[:, 0], -1).astype(jnp.int32), cache

    token, cache = prefill(state, ids, segments)
    out = [token]
    for _ in range(max_new_tokens - 1):
        token, cache = step(state, token, cache)
        out.append(token)
    return np.stack([np.asarray(t) for t in out], axis=1)


def test_greedy_generation_matches_transformers(ours, theirs, prompt_ids):
    model, tokenizer = ours
    generated = greedy_generate(model, prompt_ids, max_new_tokens=NEW_TOKENS, pad_id=tokenizer.pad_token_id)
    compared = 0
    for row, seq in enumerate(prompt_ids):
        with torch.no_grad():
            out = theirs.generate(
                torch.tensor([seq]),
                attention_mask=torch.ones(1, len(seq), dtype=torch.long),
                do_sample=False,
                max_new_tokens=NEW_TOKENS,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        reference = out[0, len(seq) :].tolist()
        # transformers stops at EOS; alignax's loop runs on, so compare the common prefix.
        assert len(reference) == NEW_TOKENS or reference[-1] == tokenizer.eos_token_id
        assert generated[row, : len(reference)].tolist() == reference, (
            row,
            tokenizer.decode(generated[row]),
            tokenizer.decode(reference),
        )
        compared += len(reference)
    assert compared >= len(prompt_ids) * 8  # real answers, not an immediate EOS


def test_save_hf_round_trip_loads_in_transformers(ours, theirs, prompt_ids, tmp_path_factory):
    model, tokenizer = ours
    out = tmp_path_factory.mktemp("export")
    models.save_hf(model, tokenizer, out)
    exported = transformers.AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    exported_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    for messages, seq in zip(PROMPTS, prompt_ids):
        assert exported_tokenizer.apply_chat_template(messages, add_generation_prompt=True) == seq
        error = max_relative_error(torch_logits(exported, seq), torch_logits(theirs, seq))
        assert error < 1e-5, error
    text = "Round trip: 12 apples, naïve café, 日本語 🎉"
    assert exported_tokenizer.encode(text) == tokenizer.encode(text)
    # And alignax reads its own export back to the same logits.
    reloaded, reloaded_tokenizer = models.load(out)
    assert reloaded_tokenizer.encode(text) == tokenizer.encode(text)
    seq = jnp.asarray([prompt_ids[0]])
    np.testing.assert_allclose(np.asarray(reloaded(seq)), np.asarray(model(seq)), rtol=0, atol=1e-5)
