"""Verdict forcing for local judges (alignax/evaluate/run/judging.py): the forced verdict is the
allowed label with the highest teacher-forced log-probability, computed here directly (a full
forward pass over prompt + judgment + prefix + label, no KV cache) and compared; judgments that
already hold a verdict, HTTP judges and --no-force-verdict are never forced; stop strings keep the
verdict in the text."""

import types

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CharTokenizer

from alignax.evaluate.run import judging


@pytest.fixture(scope="module")
def tiny():
    from flax import nnx

    from alignax.models.config import LlamaConfig
    from alignax.models.llama import Llama

    return Llama(LlamaConfig.tiny(max_position_embeddings=512), rngs=nnx.Rngs(3)), CharTokenizer()


def direct_logprob(model, context, continuation):
    """log p(continuation | context) from one uncached forward pass over the whole sequence."""
    from alignax.ops.logprobs import logprobs_from_logits

    ids = np.asarray(list(context) + list(continuation), np.int32)[None]
    logits = model(jnp.asarray(ids))
    labels = np.full(ids.shape, -1, np.int32)
    labels[0, len(context) - 1 : -1] = continuation
    return float(jnp.sum(logprobs_from_logits(logits, jnp.asarray(labels))))


def test_continuation_logprobs_equal_a_direct_forward_pass(tiny):
    from alignax.evaluate.judges.local import continuation_logprobs

    model, tok = tiny
    context = tok.encode("judge this: fine answer\n\nRating: [[")
    continuations = [tok.encode(s) for s in ("1]]", "10]]", "7]]", "A>>B]]")]
    got = continuation_logprobs(model, context, continuations)
    want = [direct_logprob(model, context, c) for c in continuations]
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert len(set(np.round(want, 3))) == len(want)  # distinct: an argmax test can tell them apart


@pytest.mark.parametrize("forcing", [judging.MT_BENCH_FORCING, judging.ARENA_HARD_FORCING])
def test_force_verdict_takes_the_most_likely_allowed_label(tiny, forcing):
    model, tok = tiny
    backend = judging.LocalChatBackend(model, tok)
    messages = [{"role": "system", "content": "be a judge"}, {"role": "user", "content": "rate: hello"}]
    judgment = "The answer is short and says hello."
    forced = backend.force_verdict(messages, judgment, forcing)
    context = tok.apply_chat_template(messages, add_generation_prompt=True) + tok.encode(judgment + forcing.prefix)
    want = {v: direct_logprob(model, context, tok.encode(v + forcing.suffix)) for v in forcing.labels}
    assert forced.label == max(want, key=want.get)
    for label in forcing.labels:
        assert forced.logprobs[label] == pytest.approx(want[label], abs=2e-4)


class RecordingBackend:
    def __init__(self):
        self.calls = []

    def force_verdict(self, messages, judgment, forcing):
        self.calls.append(judgment)
        return judging.ForcedVerdict(forcing.labels[0], {v: -1.0 for v in forcing.labels})


def fake_ctx(kind, force=True):
    return types.SimpleNamespace(judge=judging.JudgeSpec(kind, "m", base_url="http://x"), force_verdict=force)


def test_only_unparsed_local_judgments_are_forced():
    backend = RecordingBackend()
    convs, texts = [[{"role": "user", "content": "q"}]] * 3, ["Rating: [[4]]", "no verdict", "none either"]
    parsed = [True, False, False]
    forced = judging.force_missing(fake_ctx("local"), backend, convs, texts, parsed, judging.MT_BENCH_FORCING)
    assert forced[0] is None and forced[1].label == "1" and forced[2].label == "1"
    assert backend.calls == ["no verdict", "none either"]
    assert judging.forced_record(forced[0]) == {"verdict_forced": False}
    assert judging.forced_record(forced[1])["verdict_forced"] is True


@pytest.mark.parametrize("ctx", [fake_ctx("http"), fake_ctx("local", force=False)])
def test_http_judges_and_no_force_verdict_are_never_forced(ctx):
    backend = RecordingBackend()
    forced = judging.force_missing(ctx, backend, [[]] * 2, ["a", "b"], [False, False], judging.ARENA_HARD_FORCING)
    assert forced == [None, None] and backend.calls == []


def test_forced_deviation_line():
    assert judging.forced_deviation(0, 8, protocol="FastChat llm_judge") is None
    line = judging.forced_deviation(3, 8, protocol="FastChat llm_judge")
    assert line.startswith("3 of 8 verdicts forced from the judge's log-probabilities")
    assert "FastChat llm_judge would count them as unparsable" in line


def test_stop_string_is_kept_in_the_local_judgment(tiny):
    model, tok = tiny
    backend = judging.LocalChatBackend(model, tok)
    text = "Good answer. Rating: [[7]] and more"
    generation = types.SimpleNamespace(finish_reason="stop", text=text[:19], token_ids=tok.encode(text[:26]))
    assert backend._with_stop(generation, judging.MT_BENCH_FORCING.stops) == "Good answer. Rating: [[7]]"
    done = types.SimpleNamespace(finish_reason="eos", text="plain", token_ids=[])
    assert backend._with_stop(done, judging.MT_BENCH_FORCING.stops) == "plain"


def test_judge_batches_keep_the_prefill_within_its_budget(tiny):
    """Long judge prompts go to the sampler in fewer rows (the prefill's attention scores grow
    with rows x bucket x (bucket + new tokens)); every prompt is in exactly one batch."""
    model, tok = tiny
    backend = judging.LocalChatBackend(model, tok, batch_size=8)
    lengths = [3000, 100, 1500, 3900, 900, 2000, 50, 1000]
    groups = backend._groups(lengths, 2048)
    assert sorted(i for g in groups for i in g) == list(range(8))
    for g in groups:
        bucket = max(1 << (lengths[i] - 1).bit_length() for i in g)
        assert len(g) == 1 or len(g) * bucket * (bucket + 2048) <= backend.PREFILL_BUDGET
        assert len(g) <= 8
    assert [lengths[g[0]] for g in groups] == sorted((lengths[g[0]] for g in groups), reverse=True)
