"""Bradley–Terry reward model: a scalar head on a Llama checkpoint (AlpacaFarm, METHODS.md §11).

    r(x, y) = w · final_norm(h_L)[last real token of (x, y)] + b

AlpacaFarm (src/alpaca_farm/models/reward_model.py): the backbone's last hidden state (after the
final norm) at the last position, through nn.Linear(hidden, 1) with the bias zeroed (the weight
keeps PyTorch's default init, U(±1/sqrt(hidden))). It reads position −1 and so assumes left
padding; we gather at each row's true last real token instead, so any padding works. Training
uses `alignax.losses.get("reward_bt")` (−log σ(r_w − r_l)) on rewards from `RewardModel.__call__`.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alignax.annotate.density_ratio import as_messages


class RewardModel(nnx.Module):
    """A Llama backbone plus a linear head D -> 1; `rm(input_ids, segment_ids=...) -> [B]` float32."""

    def __init__(self, backbone, *, rngs: nnx.Rngs):
        self.backbone = backbone
        hidden = backbone.cfg.hidden_size
        bound = 1.0 / math.sqrt(hidden)
        self.head = nnx.Linear(
            hidden,
            1,
            kernel_init=nnx.initializers.uniform(scale=2 * bound),
            bias_init=nnx.initializers.zeros_init(),
            rngs=rngs,
        )
        # uniform(scale) draws from [0, scale); shift to [-bound, bound) like torch's default.
        self.head.kernel.value = self.head.kernel.value - bound

    @classmethod
    def from_pretrained(cls, source, *, seed: int = 0, dtype=None):
        """(RewardModel, tokenizer): a checkpoint (HF folder, .gguf or preset) + a fresh zero-bias head."""
        from alignax.models import load

        backbone, tokenizer = load(source, dtype=dtype)
        return cls(backbone, rngs=nnx.Rngs(seed)), tokenizer

    def __call__(self, input_ids: jax.Array, *, segment_ids: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        chex.assert_rank(input_ids, 2)
        chex.assert_equal_shape([input_ids, segment_ids])
        hidden = self.backbone.hidden_states(input_ids, positions=positions, segment_ids=segment_ids)
        # The last real token: the largest index with a non-zero segment id (any padding side).
        index = jnp.arange(input_ids.shape[1])[None, :]
        last = jnp.max(jnp.where(segment_ids != 0, index, -1), axis=1)
        last = jnp.maximum(last, 0)
        h_last = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
        rewards = self.head(h_last.astype(jnp.float32))[:, 0]
        chex.assert_shape(rewards, (input_ids.shape[0],))
        return rewards


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _score(graphdef, state, ids, seg):
    return nnx.merge(graphdef, state)(ids, segment_ids=seg)


def reward_model_rewards(rm: RewardModel, tokenizer, prompts: Sequence[Any], responses: Sequence[str], *, batch_size: int = 8) -> np.ndarray:
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
