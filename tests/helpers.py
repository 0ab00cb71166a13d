"""Helpers shared by the tests (one copy): a character-level tokenizer, the tiny config sizes, and
safetensors folders for the merge tests.

Imported as `from helpers import ...` (pytest puts tests/ on sys.path: the folder has no __init__).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import safetensors.numpy

from alignax.merge import pipeline
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
    import torch

    return torch.tensor(np.asarray(x, dtype=np.float64))


# --- safetensors folders (tests/test_merge.py, tests/test_merge_interop.py) -----------------------------------

MERGE_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}


def write_folder(path, tensors, config=MERGE_CONFIG, shards=1):
    """An HF-style folder written with safetensors.numpy (not alignax's writer): config.json +
    model.safetensors, or `shards` files with an index."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    names = sorted(tensors)
    if shards == 1:
        safetensors.numpy.save_file({n: tensors[n] for n in names}, str(path / "model.safetensors"))
        return path
    weight_map = {}
    for i, group in enumerate(np.array_split(np.array(names, dtype=object), shards)):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        safetensors.numpy.save_file({n: tensors[n] for n in group}, str(path / file))
        weight_map.update({n: file for n in group})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


def read_folder(path):
    """{tensor name: numpy array} of every *.safetensors file in `path`."""
    out = {}
    for file in sorted(pathlib.Path(path).glob("*.safetensors")):
        out.update(safetensors.numpy.load_file(str(file)))
    return out


def run_merge(base_dir, model_dirs, out, method, block_elements=5, **options):
    """alignax.merge's pipeline on folders; the merged tensors as read back by `read_folder`."""
    spec = pipeline.make_spec(method, len(model_dirs), **options)
    pipeline.merge(base_dir, model_dirs, spec, out, block_elements=block_elements)
    return read_folder(out)


def numpy_trim(delta, density):
    """TIES trim (Yadav et al. 2023 §3): keep the int(density * n) entries of largest |delta| (no ties here)."""
    k = max(1, int(density * delta.size))
    order = np.argsort(-np.abs(delta).ravel(), kind="stable")[:k]
    mask = np.zeros(delta.size, bool)
    mask[order] = True
    return np.where(mask.reshape(delta.shape), delta, 0)


def numpy_ties(base, models, weights, density, normalize, lam=1.0, trim=True):
    """TIES (Yadav et al. 2023 §3): trim, elect the sign of the weighted sum, disjoint mean (or sum)."""
    deltas = [m - base for m in models]
    densities = density if isinstance(density, list) else [density] * len(models)
    if trim:
        deltas = [numpy_trim(d, dens) for d, dens in zip(deltas, densities)]
    weighted = [w * d for w, d in zip(weights, deltas)]
    elected = np.where(sum(weighted) >= 0, 1.0, -1.0)
    agree = [np.sign(x) == elected for x in weighted]
    mixed = sum(x * a for x, a in zip(weighted, agree))
    divisor = sum(w * a for w, a in zip(weights, agree))
    divisor = np.where(divisor == 0, 1.0, divisor)
    return base + lam * (mixed / divisor if normalize else mixed)
