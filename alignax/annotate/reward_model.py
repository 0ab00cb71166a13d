"""Scoring conversations with a Bradley–Terry reward model (AlpacaFarm, METHODS.md §11).

`RewardModel` itself lives in `alignax.models.reward_head` (training builds and exports it); it is
re-exported here for existing callers. Training uses `alignax.losses.get("reward_bt")`
(−log σ(r_w − r_l)) on rewards from `RewardModel.__call__`.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx

from alignax.annotate.density_ratio import as_messages
from alignax.models.reward_head import RewardModel

__all__ = ["RewardModel", "reward_model_rewards", "reward_model_fn"]


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _score(graphdef, state, ids, seg):
    return nnx.merge(graphdef, state)(ids, segment_ids=seg)


def reward_model_rewards(
    rm: RewardModel, tokenizer, prompts: Sequence[Any], responses: Sequence[str], *, batch_size: int = 8
) -> np.ndarray:
    """r(x, y) for each pair: the conversation rendered with the chat template, right-padded."""
    if len(prompts) != len(responses):
        raise ValueError(f"reward_model_rewards: {len(prompts)} prompts but {len(responses)} responses")
    seqs = [
        list(tokenizer.apply_chat_template(as_messages(p) + [{"role": "assistant", "content": r}]))
        for p, r in zip(prompts, responses)
    ]
    graphdef, state = nnx.split(rm)
    out = np.zeros(len(seqs), np.float64)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for b0 in range(0, len(order), batch_size):
        idx = order[b0 : b0 + batch_size]
        length = max(32, 1 << (max(len(seqs[i]) for i in idx) - 1).bit_length())
        ids = np.zeros((batch_size, length), np.int32)
        seg = np.zeros((batch_size, length), np.int32)
        for row, i in enumerate(idx):
            ids[row, : len(seqs[i])] = seqs[i]
            seg[row, : len(seqs[i])] = 1
        for row in range(len(idx), batch_size):
            ids[row], seg[row] = ids[0], seg[0]
        out[idx] = np.asarray(_score(graphdef, state, ids, seg), np.float64)[: len(idx)]
    return out


def reward_model_fn(rm: RewardModel, tokenizer, **kwargs):
    """A `reward_fn(prompts, responses) -> [N]` for best-of-n and the annotation job."""
    return lambda prompts, responses: reward_model_rewards(rm, tokenizer, prompts, responses, **kwargs)
