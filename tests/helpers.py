"""Helpers shared by the tests (one copy): a character-level tokenizer and the tiny config sizes.

Imported as `from helpers import ...` (pytest puts tests/ on sys.path: the folder has no __init__).
"""

from __future__ import annotations

from alignax.models.config import LlamaConfig

# The sizes of alignax.models.config.LlamaConfig.tiny(), as keyword arguments of a transformers
# config (LlamaConfig, MistralConfig, Qwen2Config, Gemma2Config): the tests build the HF model
# from these and compare it with alignax's port. Read from the one definition, not copied.
_TINY = LlamaConfig.tiny()
TINY_HF_CONFIG = {
    name: getattr(_TINY, name)
    for name in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "rms_norm_eps",
        "max_position_embeddings",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    )
}


class CharTokenizer:
    """Character-level stand-in for alignax.models.Tokenizer: id = ord(char) for chars 3..255,
    ids 0/1/2 = pad/bos/eos; chat turns render as "[role]" + content + <eos>."""

    pad_token_id, bos_token_id, eos_token_id, vocab_size = 0, 1, 2, 256

    def encode(self, text, add_special_tokens=True):
        ids = [ord(c) for c in text]
        if any(not 3 <= i < 256 for i in ids):
            raise ValueError(f"CharTokenizer cannot encode {text!r}")
        return ids

    def decode(self, ids, skip_special_tokens=False):
        special = {0: "<pad>", 1: "<s>", 2: "</s>"}
        return "".join(("" if skip_special_tokens else special[i]) if i in special else chr(i) for i in ids)

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True):
        ids = []
        for m in messages:
            ids += self.encode(f"[{m['role']}]") + self.encode(m["content"]) + [self.eos_token_id]
        if add_generation_prompt:
            ids += self.encode("[assistant]")
        return ids if tokenize else self.decode(ids)


def torch_f64(x):
    """`x` as a float64 torch tensor: the reference implementations (TRL and the papers' code) run in
    float64 so that a mismatch is alignax's, not rounding's."""
    import numpy as np
    import torch

    return torch.tensor(np.asarray(x, dtype=np.float64))
