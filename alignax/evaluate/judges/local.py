"""A judge backed by a local alignax model: reads the probabilities of the verdict tokens.

As AlpacaEval's weighted judge reads the logprobs of "m" and "M" for its first generated token,
this judge renders the judge prompt with the model's chat template (generation prompt on), runs
one forward pass, and takes p = softmax(logits[last position]) over the whole vocabulary:

  P(verdict v) = p[token_id(v)]                     (each verdict must be a single token)
  AlpacaEval preference = 2 - P(m) / (P(m) + P(M))  (in [1, 2]; 2 = output_2 better)

Model API: `logits = model(input_ids[None])` with shape [1, T, V]; tokenizer API: `encode(text,
add_special_tokens=False)` and `apply_chat_template(messages, add_generation_prompt=True)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from alignax.evaluate.judges import base, prompts
from alignax.sample import prefix_scoring


def verdict_token_ids(tokenizer: Any, verdicts: Sequence[str]) -> list[int]:
    """The single token id of each verdict string; an error if one needs several tokens."""
    ids = []
    for verdict in verdicts:
        encoded = tokenizer.encode(verdict, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(
                f"verdict {verdict!r} is {len(encoded)} tokens {encoded}, not one: "
                "the judge reads one next-token probability per verdict"
            )
        ids.append(int(encoded[0]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"verdicts {list(verdicts)} share token ids {ids}")
    return ids


class LocalModelJudge(base.PairwiseJudge):
    """AlpacaEval-style pairwise judge from a local model's next-token distribution."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        verdicts: Sequence[str] = prompts.ALPACA_EVAL_VERDICT_TOKENS,
        max_prompt_tokens: int | None = None,
    ):
        if len(verdicts) != 2:
            raise ValueError(f"a pairwise judge needs two verdicts (output_1, output_2), got {verdicts}")
        self.model, self.tokenizer = model, tokenizer
        self.verdicts = tuple(verdicts)
        self.verdict_ids = verdict_token_ids(tokenizer, self.verdicts)
        self.max_prompt_tokens = max_prompt_tokens

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> np.ndarray:
        ids = np.asarray(self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True), dtype=np.int32)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError(f"chat template produced token ids of shape {ids.shape}")
        if self.max_prompt_tokens is not None and ids.size > self.max_prompt_tokens:
            # Why an error, not truncation: cutting the prompt would drop the verdict request.
            raise ValueError(f"judge prompt is {ids.size} tokens > max_prompt_tokens={self.max_prompt_tokens}")
        return ids

    def next_token_probs(self, messages: Sequence[dict[str, str]]) -> np.ndarray:
        """softmax of the model's last-position logits [V] (float64 on the host)."""
        ids = self.prompt_ids(messages)
        logits = self.model(jnp.asarray(ids)[None])
        chex.assert_rank(logits, 3)
        chex.assert_shape(logits, (1, ids.size, None))
        last = jnp.asarray(logits[0, -1], jnp.float32)
        probs = np.asarray(jax.nn.softmax(last), dtype=np.float64)
        if not np.all(np.isfinite(probs)):
            raise ValueError("model produced non-finite next-token probabilities")
        return probs

    def verdict_probs(self, messages: Sequence[dict[str, str]]) -> dict[str, float]:
        probs = self.next_token_probs(messages)
        return {v: float(probs[i]) for v, i in zip(self.verdicts, self.verdict_ids)}

    def judge_pair(self, *, instruction: str, output_1: str, output_2: str) -> base.PairwiseVerdict:
        messages = prompts.alpaca_eval_messages(instruction=instruction, output_1=output_1, output_2=output_2)
        probs = self.verdict_probs(messages)
        first, second = self.verdicts
        return base.PairwiseVerdict(prompts.alpaca_eval_preference(probs[first], probs[second]), raw=probs)


# ------------------------------------------------------------------------------------------------
# Continuation log-probabilities: verdict forcing for text judges (alignax/evaluate/run/judging.py).


def continuation_logprobs(model: Any, context_ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> np.ndarray:
    """log p(continuation | context) of each continuation, [K] float64, from one pass over the
    context (its KV cache is then shared by the K continuations in one batched pass:
    alignax/sample/prefix_scoring.py).

    This is what a judge's verdict probability is when the judge writes its verdict as several
    tokens (e.g. MT-Bench's "10]]"): the product of the teacher-forced token probabilities.
    """
    if len(context_ids) == 0 or not continuations or any(len(c) == 0 for c in continuations):
        raise ValueError("continuation_logprobs: needs a non-empty context and non-empty continuations")
    return prefix_scoring.continuation_logprobs(
        model,
        [list(context_ids)],
        continuations,
        [0] * len(continuations),
        contexts_per_batch=1,
        rows_per_batch=len(continuations),
    )
