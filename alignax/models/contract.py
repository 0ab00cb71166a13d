"""The model contract: what the trainer, the sampler and the server use of a causal LM.

Written down once, so that a new model family is one new file (its config subclass, its model
class and its HF key map, registered in registry.py). Every family in alignax satisfies it:

  * `alignax.train.methods` calls `hidden_states(...)` and `lm_head_weight()` (log-probs computed
    in chunks from the final hidden states, never materializing [B, T, V] logits); a family whose
    logits are not plain `h @ W` says so in `final_logit_softcap`.
  * `alignax.sample.sampler` and `alignax.serve` call `init_cache(batch, length)` and
    `model(ids, positions=..., segment_ids=..., cache=cache, last_only=True)`.
  * everything reads `cfg` (vocab_size, max_position_embeddings, token ids, remat...).

The layout follows Tunix (google/tunix, `tunix/models/*/model.py` + `params.py`): one module per
family, the checkpoint key map beside the model, families found by name in a registry.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import jax

# k/v: one stacked [L, B, S, KVH, hd] array (scan_layers) or a tuple of L [B, S, KVH*hd] buffers.
Cache = dict[str, jax.Array | tuple[jax.Array, ...]]

# (path inside one decoder layer, HF tensor name suffix after `model.layers.{i}.`, transposed).
LayerParam = tuple[tuple[str, ...], str, bool]


@runtime_checkable
class ModelConfig(Protocol):
    """The hyperparameters everyone reads; HF `config.json` names (see config.LlamaConfig)."""

    architecture: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    bos_token_id: int | None
    eos_token_id: int | tuple[int, ...] | None
    pad_token_id: int | None
    dtype: str
    param_dtype: str
    remat: bool
    scan_layers: bool

    @classmethod
    def from_hf(cls, config: Mapping[str, Any], **overrides) -> "ModelConfig": ...

    def to_hf(self) -> dict[str, Any]: ...


@runtime_checkable
class CausalLM(Protocol):
    """A decoder-only LM in Flax NNX with a KV cache and packed-sequence (segment id) masking.

    Shapes: input_ids / positions / segment_ids [B, T] int32 (segment 0 = padding; tokens attend
    causally within their own segment; positions restart at 0 per segment by default). Logits are
    float32.
    """

    cfg: ModelConfig

    def __call__(
        self,
        input_ids: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: Cache | None = None,
        last_only: bool = False,
    ):
        """logits [B, T, V] (or [B, 1, V] with last_only); with a cache, (logits, updated cache)."""

    def hidden_states(
        self,
        input_ids: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        exit_layers: Sequence[int] | None = None,
    ):
        """final_norm(h_L) [B, T, D]; with exit_layers, {layer: final_norm(h_layer)}."""

    def lm_head_weight(self) -> jax.Array:
        """The output projection [D, V] (the transposed embedding when tied)."""

    def logits_from_hidden(self, hidden: jax.Array) -> jax.Array:
        """float32 logits of `hidden_states` output, soft-capped when the family does so."""

    @property
    def final_logit_softcap(self) -> float | None:
        """None, or c: logits = c * tanh((h @ W_head) / c) (Gemma-2)."""

    def init_cache(self, batch_size: int, max_length: int, dtype=None) -> Cache:
        """An empty KV cache: k/v [L, B, S, KVH, hd] stacked (scan_layers) or a tuple of L per-layer
        [B, S, KVH*hd] buffers, segment_ids / positions [B, S], index []."""


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family: its config class (which names the HF architectures it reads), its model
    class (a CausalLM) and its HF key map for the per-layer tensors. The embedding, final norm and
    untied `lm_head` are named the same in every family (hf_io.param_table)."""

    name: str
    config_class: type
    model_class: type
    hf_layer_params: tuple[LayerParam, ...]

    @property
    def architectures(self) -> tuple[str, ...]:
        return tuple(self.config_class.ARCHITECTURES)
