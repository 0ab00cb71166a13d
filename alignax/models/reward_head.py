"""Bradley–Terry reward model: a scalar head on a Llama backbone, and its Hugging Face export.

    r(x, y) = w · final_norm(h_L)[last real token of (x, y)] + b

AlpacaFarm (src/alpaca_farm/models/reward_model.py): the backbone's last hidden state (after the
final norm) at the last position, through nn.Linear(hidden, 1) with the bias zeroed (the weight
keeps PyTorch's default init, U(±1/sqrt(hidden))). It reads position −1 and so assumes left
padding; we gather at each row's true last real token instead, so any padding works.

It lives in alignax.models (not alignax.annotate) because training builds and exports it; the
annotation code that scores conversations with it (`alignax.annotate.reward_model`) imports it.

Export (`save_reward_model_hf`) writes what transformers loads as ``LlamaForSequenceClassification``
(or Mistral's): the backbone as ``model.*``, the head as ``score.weight [1, hidden]``, num_labels 1
and a ``pad_token_id`` so that transformers pools at the last non-pad token, as ``__call__`` does.
transformers' score layer has no bias; the Bradley–Terry loss −log σ(r_w − r_l) never moves the
bias (its gradient is exactly zero), so it stays 0. A non-zero bias (set by hand, or another loss)
is kept in config.json as ``alignax_reward_bias`` and logged, since transformers' scores then differ
from alignax's by that constant.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_log = logging.getLogger(__name__)

SCORE_NAME = "score.weight"
REWARD_BIAS_KEY = "alignax_reward_bias"


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
        """(RewardModel, tokenizer): a causal-LM checkpoint (HF folder, .gguf or preset) gets a fresh
        zero-bias head; a folder written by `save_reward_model_hf` gets its trained head back."""
        from alignax.models import load

        if os.path.isdir(os.fspath(source)) and _is_reward_model_folder(source):
            return load_reward_model_hf(source, dtype=dtype)
        backbone, tokenizer = load(source, dtype=dtype)
        return cls(backbone, rngs=nnx.Rngs(seed)), tokenizer

    def __call__(
        self, input_ids: jax.Array, *, segment_ids: jax.Array, positions: jax.Array | None = None
    ) -> jax.Array:
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


def _sequence_classification_architecture(causal_architecture: str) -> str:
    return causal_architecture.replace("ForCausalLM", "ForSequenceClassification")


def _is_reward_model_folder(folder) -> bool:
    try:
        config = json.loads((pathlib.Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return isinstance(architectures, list) and any(
        isinstance(a, str) and a.endswith("ForSequenceClassification") for a in architectures
    )


def _pad_token_id(rm: RewardModel, tokenizer) -> int:
    """The id transformers pools with: it scores the last token that is not this id, so it must
    be an id real sequences do not end with (the pad token; EOS only as a logged last resort)."""
    for candidate in (rm.backbone.cfg.pad_token_id, getattr(tokenizer, "pad_token_id", None)):
        if candidate is not None:
            return int(candidate)
    eos = rm.backbone.cfg.eos_token_id
    eos = eos[0] if isinstance(eos, (tuple, list)) else eos
    if eos is None:
        raise ValueError(
            "reward-model export needs a pad_token_id (transformers pools at the last "
            "non-pad token); the config and tokenizer have neither pad nor eos ids"
        )
    _log.warning(
        "no pad token: exporting pad_token_id=eos (%d); transformers will score the token before a trailing EOS", eos
    )
    return int(eos)


def reward_model_hf_config(rm: RewardModel, tokenizer=None) -> dict:
    """The config.json of the sequence-classification export of `rm`."""
    config = rm.backbone.cfg.to_hf()
    config["architectures"] = [_sequence_classification_architecture(rm.backbone.cfg.architecture)]
    config["num_labels"] = 1
    config["id2label"] = {"0": "LABEL_0"}
    config["label2id"] = {"LABEL_0": 0}
    config["pad_token_id"] = _pad_token_id(rm, tokenizer)
    # The classifier has no LM head; "tied" lets the folder load back without an lm_head tensor.
    config["tie_word_embeddings"] = True
    bias = float(np.asarray(jax.device_get(rm.head.bias[...])).reshape(-1)[0])
    if bias != 0.0:
        _log.warning(
            "reward head bias %.6g is not representable in transformers' score layer "
            "(no bias); stored as config.json %s",
            bias,
            REWARD_BIAS_KEY,
        )
        config[REWARD_BIAS_KEY] = bias
    return config


def save_reward_model_hf(rm: RewardModel, tokenizer, out_dir: str | os.PathLike) -> pathlib.Path:
    """Writes `rm` as a folder transformers' AutoModelForSequenceClassification loads, scoring
    like `rm` (within float tolerance) on right- or left-padded batches."""
    from alignax.models import hf_io

    tensors = {
        name: value for name, value in hf_io.state_dict_from_model(rm.backbone).items() if name != "lm_head.weight"
    }
    kernel = np.asarray(jax.device_get(rm.head.kernel[...]), np.float32)  # [D, 1]
    tensors[SCORE_NAME] = np.ascontiguousarray(kernel.T.astype(tensors["model.norm.weight"].dtype))
    return hf_io.write_hf_folder(out_dir, reward_model_hf_config(rm, tokenizer), tensors, tokenizer)


def load_reward_model_hf(folder: str | os.PathLike, *, dtype=None):
    """(RewardModel, tokenizer | None) from a folder written by `save_reward_model_hf`."""
    from alignax.models import hf_io, registry
    from alignax.models.tokenizer import Tokenizer

    folder = pathlib.Path(folder)
    config = hf_io.read_config_dict(folder)
    architecture = config["architectures"][0].replace("ForSequenceClassification", "ForCausalLM")
    overrides = {} if dtype is None else {"dtype": jnp.dtype(dtype).name}
    try:
        # The family (Llama, Qwen2, Gemma-2) from the architecture name, as for causal LMs.
        cfg = registry.config_from_hf({**config, "architectures": [architecture]}, **overrides)
    except (ValueError, TypeError) as e:
        raise hf_io.CheckpointError(f"{folder / hf_io.CONFIG_NAME}: {e}") from e
    tensors = hf_io.read_checkpoint_tensors(folder)
    score = tensors.pop(SCORE_NAME, None)
    if score is None or tuple(score.shape) != (1, cfg.hidden_size):
        raise hf_io.CheckpointError(
            f"{folder}: needs tensor {SCORE_NAME!r} of shape (1, {cfg.hidden_size}), "
            f"got {None if score is None else tuple(score.shape)}"
        )
    backbone = hf_io.model_from_state_dict(cfg, tensors)
    rm = RewardModel(backbone, rngs=nnx.Rngs(0))
    rm.head.kernel.value = jnp.asarray(np.asarray(score, np.float32).T)
    rm.head.bias.value = jnp.full((1,), float(config.get(REWARD_BIAS_KEY, 0.0)), jnp.float32)
    tokenizer = Tokenizer.from_dir(folder) if (folder / "tokenizer.json").is_file() else None
    return rm, tokenizer
