"""CUT (Xu et al., 2024; METHODS.md section 7): the token-flag rule on constructed cases, the
per-token tables of packed rows, the judgment data path and its bad-input policy, and the `cut`
method against the loss computed from sequences run one by one."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alignax import losses
from alignax.data.errors import DataError
from alignax.data.tokenize import TokenizedDataset, TokenizedExample, TokenizedSequence
from alignax.losses.cut import cut, cut_flags
from alignax.models.config import LlamaConfig
from alignax.models.llama import Llama
from alignax.train import feed as feed_lib
from alignax.train import methods

LOG = math.log


# ----------------------------------------------------------------------------- the token-flag rule


def test_flag_when_the_judgment_raises_the_probability_by_more_than_the_threshold():
    """p_j / p_0 > lambda flags a token: 0.6/0.5 = 1.2 > 1.1 yes; 0.5/0.5 no; 0.3/0.5 (the judgment
    lowers it) no; 0.54/0.5 = 1.08, just under: no; a masked token never."""
    p_j = np.array([[0.6, 0.5, 0.3, 0.54, 0.9]])
    p_0 = np.array([[0.5, 0.5, 0.5, 0.5, 0.1]])
    mask = np.array([[1, 1, 1, 1, 0]])
    flags = cut_flags(judged_logps=jnp.log(p_j), unjudged_logps=jnp.log(p_0), mask=mask, threshold=1.1)
    np.testing.assert_array_equal(np.asarray(flags), [[True, False, False, False, False]])
    # A higher threshold un-flags the 1.2 ratio; threshold 1 flags any rise.
    assert not np.asarray(
        cut_flags(judged_logps=jnp.log(p_j), unjudged_logps=jnp.log(p_0), mask=mask, threshold=1.3)
    ).any()
    rise = cut_flags(judged_logps=jnp.log(p_j), unjudged_logps=jnp.log(p_0), mask=mask, threshold=1.0)
    np.testing.assert_array_equal(np.asarray(rise), [[True, False, False, True, False]])


def test_loss_on_a_constructed_batch_and_flags_are_detached():
    """One positive row (MLE only) and one negative row with a flagged and an unflagged token:
    L = (L_MLE + L_UL) / 2, L_UL = -[alpha log(1 - p_0) + log p_0'] / 2; the flags carry no gradient."""
    aligned = jnp.log(jnp.array([[0.9, 0.8], [0.6, 0.4]]))  # row 1: p_j = 0.6, 0.4
    unjudged = jnp.log(jnp.array([[0.5, 0.5], [0.3, 0.4]]))  # row 1: p_0 = 0.3 (ratio 2: flag), 0.4 (1: keep)
    mask = jnp.ones((2, 2))
    negative = jnp.array([False, True])
    loss, metrics = cut(
        aligned_logps=aligned,
        aligned_mask=mask,
        unjudged_logps=unjudged,
        is_negative=negative,
        threshold=1.1,
        unlikelihood_weight=0.5,
    )
    mle = -(LOG(0.9) + LOG(0.8) + LOG(0.6) + LOG(0.4)) / 4
    unlikelihood = -(0.5 * LOG(1 - 0.3) + LOG(0.4)) / 2
    assert float(loss) == pytest.approx((mle + unlikelihood) / 2, rel=1e-5)
    assert float(metrics["cut/num_flagged"]) == 1.0
    # d L / d aligned: only the MLE term (-1/(2*4) per token); the ratio that sets the flags is detached.
    grad = jax.grad(
        lambda a: cut(aligned_logps=a, aligned_mask=mask, unjudged_logps=unjudged, is_negative=negative)[0]
    )(aligned)
    np.testing.assert_allclose(np.asarray(grad), -np.full((2, 2), 1 / 8), rtol=1e-6)
    # No negative row: plain MLE.
    only_positive, _ = cut(
        aligned_logps=aligned, aligned_mask=mask, unjudged_logps=unjudged, is_negative=jnp.array([False, False])
    )
    assert float(only_positive) == pytest.approx(mle, rel=1e-5)


def test_cut_is_trained_by_the_cut_method_and_config():
    entry = losses.info("cut")
    assert entry.method == "cut" and entry.config == "configs/cut.py" and entry.pending is None
    assert set(methods.MODEL_INPUTS["cut"]) | {"is_negative"} == set(entry.inputs)


# ----------------------------------------------------------------------------- per-token tables


def packed_batch(rows, num_sequences, length=16):
    """rows: per row a list of (sequence number, prompt length, response ids)."""
    batch = {k: np.zeros((len(rows), length), np.int32) for k in ("input_ids", "segment_ids", "positions", "loss_mask")}
    batch["sequence_index"] = np.full((len(rows), 3), -1, np.int32)
    for r, members in enumerate(rows):
        offset = 0
        for slot, (seq, prompt_length, response) in enumerate(members):
            n = prompt_length + len(response)
            span = slice(offset, offset + n)
            batch["input_ids"][r, span] = [7] * prompt_length + list(response)
            batch["segment_ids"][r, span] = slot + 1
            batch["positions"][r, span] = np.arange(n)
            batch["loss_mask"][r, offset + prompt_length : offset + n] = 1
            batch["sequence_index"][r, slot] = seq
            offset += n
    return {k: jnp.asarray(v) for k, v in batch.items()}


def test_response_token_table_aligns_the_same_response_under_two_prompts():
    """Sequence 0 (prompt 2, packed second in row 0) and sequence 1 (prompt 5, alone in row 1) hold
    the same response: their t-th response tokens land in the same column."""
    response = [11, 12, 13]
    batch = packed_batch([[(2, 1, [20, 21]), (0, 2, response)], [(1, 5, response)]], 3)
    values = jnp.asarray(batch["input_ids"][:, 1:], jnp.float32)  # the label token as the "log-prob"
    table, mask = methods.response_token_table(values * methods._target_mask(batch), batch, 3)
    np.testing.assert_array_equal(np.asarray(table[:2, :3]), [response, response])
    np.testing.assert_array_equal(np.asarray(mask[:, :4]), [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(np.asarray(table[2, :2]), [20, 21])


# ----------------------------------------------------------------------------- the data path


def seq(prompt, response):
    ids = np.asarray(list(prompt) + list(response), np.int32)
    return TokenizedSequence(
        input_ids=ids,
        loss_mask=np.asarray([0] * len(prompt) + [1] * len(response), np.int32),
        prompt_length=len(prompt),
    )


def dataset(examples):
    return TokenizedDataset(
        task="judgment", side_names=("plain", "judgment"), examples=examples, stats={}, report=None, fingerprint="x"
    )


def test_judgments_share_response_tokens_and_scores_set_negatives():
    examples = [
        TokenizedExample(0, None, (seq([1, 2], [5, 6, 7]), seq([1, 3, 3, 2], [5, 6])), {"score": np.float32(3)}),
        TokenizedExample(1, None, (seq([1], [8, 9]), seq([1, 4], [8, 9])), {"score": np.float32(9)}),
        TokenizedExample(2, None, (seq([1], [8]), seq([1, 4], [8])), {"score": np.float32(np.nan)}),
    ]
    out = feed_lib.prepare_judgments(dataset(examples), positive_score=7.0, on_error="error", source="t.jsonl")
    first = out.examples[0]
    assert [s.response_length for s in first.sequences] == [2, 2]  # the judged side was cut by max_length
    np.testing.assert_array_equal(first.sequences[0].input_ids, [1, 2, 5, 6])
    assert [float(e.scalars["is_negative"]) for e in out.examples] == [1.0, 0.0, 1.0]  # 3 < 7; 9 >= 7; no score
    assert all(set(e.scalars) == {"is_negative"} for e in out.examples)


def test_a_response_tokenized_differently_is_bad_input():
    bad = [
        TokenizedExample(0, None, (seq([1], [5, 6]), seq([1, 4], [5, 9])), {"score": np.float32(2)}),
        TokenizedExample(1, None, (seq([1], [5]), seq([1, 4], [5])), {"score": np.float32(2)}),
    ]
    with pytest.raises(DataError, match="t.jsonl record 0.*tokenizes differently"):
        feed_lib.prepare_judgments(dataset(list(bad)), positive_score=7.0, on_error="error", source="t.jsonl")
    kept = feed_lib.prepare_judgments(dataset(list(bad)), positive_score=7.0, on_error="skip", source="t.jsonl")
    assert [e.index for e in kept.examples] == [1]


# ----------------------------------------------------------------------------- the method


def test_cut_method_equals_the_loss_of_sequences_run_one_by_one():
    """Two examples (negative, positive) packed into rows: the method's loss equals `cut` on
    per-token log-probs from running each sequence alone."""
    model = Llama(LlamaConfig.tiny(vocab_size=40), rngs=nnx.Rngs(0))
    # Sequences: 0, 1 plain (x); 2, 3 under the judgment prompt (x, j); same responses per example.
    responses = {0: [11, 12, 13, 14], 1: [21, 22, 23]}
    prompts = {0: [3, 4], 1: [5, 6], 2: [3, 4, 30, 31, 32], 3: [5, 6, 33, 34]}
    members = {s: (s, len(prompts[s]), responses[s % 2]) for s in range(4)}
    batch = packed_batch([[members[0], members[3]], [members[2]], [members[1]]], 4)
    batch["input_ids"] = batch["input_ids"].at[0, :2].set(jnp.array(prompts[0]))
    batch["input_ids"] = batch["input_ids"].at[0, 6:10].set(jnp.array(prompts[3]))
    batch["input_ids"] = batch["input_ids"].at[1, :5].set(jnp.array(prompts[2]))
    batch["input_ids"] = batch["input_ids"].at[2, :2].set(jnp.array(prompts[1]))
    batch["field/is_negative"] = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    loss, metrics = methods.cut_method(
        model, batch, loss_name="cut", hparams={"threshold": 1.05}, chunk_size=8, batch_size=2, num_tokens=None
    )

    def response_logps(s):
        ids = jnp.asarray([prompts[s] + responses[s % 2]])
        logps = jax.nn.log_softmax(model(ids)[0, :-1], axis=-1)
        targets = ids[0, 1:]
        return jnp.take_along_axis(logps, targets[:, None], axis=1)[len(prompts[s]) - 1 :, 0]

    width = 4
    pad = lambda v: jnp.pad(v, (0, width - v.shape[0]))  # noqa: E731
    plain = jnp.stack([pad(response_logps(0)), pad(response_logps(1))])
    judged = jnp.stack([pad(response_logps(2)), pad(response_logps(3))])
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 1, 0]], jnp.float32)
    negative = jnp.array([True, False])
    expected, expected_metrics = cut(
        aligned_logps=jnp.where(negative[:, None], judged, plain),
        aligned_mask=mask,
        unjudged_logps=plain,
        is_negative=negative,
        threshold=1.05,
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-4)
    assert float(metrics["cut/num_flagged"]) == float(expected_metrics["cut/num_flagged"])
