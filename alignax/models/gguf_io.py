"""GGUF import: config from the metadata, tensors renamed to Hugging Face names, dequantized lazily.

A GGUF file (llama.cpp's format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) holds
key/value metadata and named tensors. For the Llama family:

* metadata ``llama.*`` -> the HF ``config.json`` fields (``hf_config_from_gguf``);
* ``token_embd`` / ``blk.N.attn_q`` / ... -> ``model.embed_tokens`` / ``model.layers.N.self_attn.q_proj``
  / ... (``GGUF_TO_HF``);
* quantized blocks (Q4_0, Q4_1, Q8_0, Q6_K, ...) are dequantized with the ``gguf`` package's own
  ``gguf.quants.dequantize`` (the block formats are not re-implemented here);
* llama.cpp's converter (convert_hf_to_gguf.py, ``LlamaModel.permute``) stores the Q and K projections
  with the rows of each head reordered from HF's "rotate half" rotary layout to the interleaved
  layout: ``w.reshape(H, 2, d/2, D).swapaxes(1, 2)``. ``unpermute_qk`` applies the inverse
  ``w.reshape(H, d/2, 2, D).swapaxes(1, 2)`` (as transformers' integrations/ggml.py does), with
  ``H`` the number of KV heads for K.

Tensors are read lazily: ``GGUFTensors`` is a ``Mapping`` whose values are dequantized on access
from the reader's memory map, so a sharded load touches one tensor at a time.
"""

from __future__ import annotations

import collections.abc
import os
import re
from typing import Any, Iterator

import gguf
import numpy as np

from alignax.models.gguf_scan import GGUFError, scan_header

# Tensor types whose dequantization this module checks in its tests; every other type the gguf
# package can dequantize is accepted too (``_dequantize`` raises for the rest, naming the tensor).
TESTED_TENSOR_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q6_K")

# llama.cpp architecture name -> HF architecture. Mistral GGUFs are written as "llama" (the
# sliding window, when present, comes from ``llama.attention.sliding_window``).
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")


def open_gguf(path: str | os.PathLike) -> gguf.GGUFReader:
    """Opens ``path`` as a memory-mapped ``gguf.GGUFReader`` (tensor data is not read yet), after
    ``gguf_scan.scan_header`` has checked every count, length and tensor extent against the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    # GGUFReader trusts the header's counts (it can loop for hours on a hostile one): check them
    # against the file first.
    scan_header(path)
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as e:  # the gguf package raises bare ValueErrors on bad magic/version
        raise GGUFError(f"{path}: not a readable GGUF file ({e})") from e
    # Remember where it came from so later errors can name the file.
    reader.alignax_path = path  # type: ignore[attr-defined]
    return reader


def _path(reader: gguf.GGUFReader) -> str:
    """The file a reader was opened from (for error messages)."""
    path = getattr(reader, "alignax_path", None)
    if path is None:  # a reader opened directly with gguf.GGUFReader: its memmap knows the file
        path = getattr(getattr(reader, "data", None), "filename", None) or "<gguf>"
    return str(path)


def field_value(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    """The Python value of metadata ``key`` (str, int, float, bool or list), or ``default``."""
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def _required(reader: gguf.GGUFReader, key: str) -> Any:
    value = field_value(reader, key)
    if value is None:
        raise GGUFError(f"{_path(reader)}: missing metadata key {key!r}")
    return value


def _positive_int(reader: gguf.GGUFReader, key: str, default: Any = None) -> int:
    """Metadata ``key`` as a positive int (required when ``default`` is None)."""
    value = _required(reader, key) if default is None else field_value(reader, key, default)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise GGUFError(f"{_path(reader)}: metadata {key}={value!r} must be a positive integer")
    return int(value)


def _positive_float(reader: gguf.GGUFReader, key: str, default: float) -> float:
    value = field_value(reader, key, default)
    if not isinstance(value, (int, float, np.number)) or isinstance(value, bool) or not 0 < value < np.inf:
        raise GGUFError(f"{_path(reader)}: metadata {key}={value!r} must be a positive finite number")
    return _float32_value(value)


def _token_id(reader: gguf.GGUFReader, key: str) -> int | None:
    value = field_value(reader, key)
    if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0):
        raise GGUFError(f"{_path(reader)}: metadata {key}={value!r} must be a non-negative integer")
    return None if value is None else int(value)


def _check_block_count(reader: gguf.GGUFReader, key: str, block_count: int) -> None:
    """The declared layer count must be the layers the file has tensors for: a header saying a
    million layers over a few tensors would otherwise build a million-layer model first."""
    layers = {int(m.group(1)) for m in (_BLOCK_RE.match(t.name) for t in reader.tensors) if m}
    if layers != set(range(block_count)):
        have = f"tensors for layers 0..{max(layers)}" if layers else "no layer tensors"
        raise GGUFError(
            f"{_path(reader)}: metadata {key}={block_count} but the file has {have} ({len(layers)} distinct layers)"
        )


def _float32_value(value: float) -> float:
    """GGUF stores these as float32; take the shortest decimal that rounds to it (1e-05, not
    9.999999747378752e-06), i.e. the value the HF config had before conversion."""
    return float(str(np.float32(value)))


def _vocab_size(reader: gguf.GGUFReader, p: str) -> int:
    """``{arch}.vocab_size``, or the length of the token list when the key is absent."""
    if field_value(reader, p + "vocab_size") is not None:
        return _positive_int(reader, p + "vocab_size")
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    if not tokens:
        raise GGUFError(f"{_path(reader)}: neither {p}vocab_size nor tokenizer.ggml.tokens is present")
    return len(tokens)


def _rope_scaling(reader: gguf.GGUFReader, p: str) -> dict[str, Any] | None:
    """HF's rope_scaling dict for ``{arch}.rope.scaling.*`` (only linear scaling is supported)."""
    scaling_type = field_value(reader, p + "rope.scaling.type")
    if scaling_type in (None, "none"):
        return None
    if scaling_type != "linear":
        raise GGUFError(f"{_path(reader)}: unsupported {p}rope.scaling.type {scaling_type!r}")
    _required(reader, p + "rope.scaling.factor")
    return {"rope_type": "linear", "factor": _positive_float(reader, p + "rope.scaling.factor", 1.0)}


def hf_config_from_gguf(reader: gguf.GGUFReader) -> dict[str, Any]:
    """The HF ``config.json`` dict of a llama-architecture GGUF.

    Mapping (llama.cpp gguf-py ``Keys`` -> transformers ``LlamaConfig``): block_count ->
    num_hidden_layers, embedding_length -> hidden_size, feed_forward_length -> intermediate_size,
    attention.head_count(_kv) -> num_attention_heads / num_key_value_heads, attention.key_length ->
    head_dim, attention.layer_norm_rms_epsilon -> rms_norm_eps, rope.freq_base -> rope_theta,
    context_length -> max_position_embeddings; tied embeddings when the file has no output.weight.
    """
    path = _path(reader)
    arch = _required(reader, "general.architecture")
    if arch not in _ARCHITECTURES:
        raise GGUFError(
            f"{path}: unsupported architecture {arch!r} (general.architecture); supported: {sorted(_ARCHITECTURES)}"
        )
    p = f"{arch}."
    tensor_names = {t.name for t in reader.tensors}
    if "rope_freqs.weight" in tensor_names:
        # Llama 3.1+ GGUFs bake the llama3 rope scaling into per-frequency factors; recovering
        # the HF rope_scaling dict from them is not implemented, and ignoring them changes outputs.
        raise GGUFError(
            f"{path}: tensor 'rope_freqs.weight' (llama3 rope scaling) is not supported; "
            "load the Hugging Face checkpoint folder instead"
        )
    heads = _positive_int(reader, p + "attention.head_count")
    vocab_size = _vocab_size(reader, p)
    key_length = field_value(reader, p + "attention.key_length")
    if key_length is not None:
        key_length = _positive_int(reader, p + "attention.key_length")
    block_count = _positive_int(reader, p + "block_count")
    _check_block_count(reader, p + "block_count", block_count)
    rope_scaling = _rope_scaling(reader, p)
    sliding_window = field_value(reader, p + "attention.sliding_window")
    if sliding_window is not None:
        sliding_window = _positive_int(reader, p + "attention.sliding_window")
    architecture = _ARCHITECTURES[arch]
    if sliding_window is not None and arch == "llama":
        architecture = "MistralForCausalLM"
    config = {
        "architectures": [architecture],
        "model_type": "mistral" if architecture == "MistralForCausalLM" else "llama",
        "vocab_size": int(vocab_size),
        "hidden_size": _positive_int(reader, p + "embedding_length"),
        "intermediate_size": _positive_int(reader, p + "feed_forward_length"),
        "num_hidden_layers": block_count,
        "num_attention_heads": heads,
        "num_key_value_heads": _positive_int(reader, p + "attention.head_count_kv", heads),
        "head_dim": key_length,
        "rms_norm_eps": _positive_float(reader, p + "attention.layer_norm_rms_epsilon", 1e-5),
        "rope_theta": _positive_float(reader, p + "rope.freq_base", 10000.0),
        "rope_scaling": rope_scaling,
        "max_position_embeddings": _positive_int(reader, p + "context_length", 2048),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "sliding_window": sliding_window,
        "bos_token_id": _token_id(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _token_id(reader, "tokenizer.ggml.eos_token_id"),
        "pad_token_id": _token_id(reader, "tokenizer.ggml.padding_token_id"),
    }
    if config["head_dim"] is None:
        config["head_dim"] = config["hidden_size"] // heads
    return config


def hf_name(gguf_name: str, *, path: str = "<gguf>") -> str:
    """The HF parameter name of a llama GGUF tensor name (``blk.3.attn_q.weight`` ->
    ``model.layers.3.self_attn.q_proj.weight``)."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _BLOCK_RE.match(gguf_name)
    if match is None or match.group(2) not in _BLOCK_NAMES:
        raise GGUFError(f"{path}: unexpected tensor {gguf_name!r} for the llama architecture")
    layer, part, kind = match.groups()
    return f"model.layers.{layer}.{_BLOCK_NAMES[part]}.{kind}"


def unpermute_qk(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Undoes llama.cpp's rotary row permutation of a Q or K projection ``[H*d, D]`` (or bias ``[H*d]``).

    convert_hf_to_gguf.py writes ``w.reshape(H, 2, d//2, *rest).swapaxes(1, 2).reshape(w.shape)``;
    this is its inverse, ``w.reshape(H, d//2, 2, *rest).swapaxes(1, 2).reshape(w.shape)``.
    """
    rows = weight.shape[0]
    if rows % (2 * num_heads):
        raise ValueError(f"cannot unpermute {weight.shape} over {num_heads} heads")
    half = rows // num_heads // 2
    return weight.reshape(num_heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def dequantize_tensor(tensor: gguf.ReaderTensor, *, path: str = "<gguf>") -> np.ndarray:
    """The float32 value of one GGUF tensor, in numpy (row-major, HF) shape ``reversed(ne)``."""
    shape = tuple(int(n) for n in reversed(tensor.shape))
    qtype = tensor.tensor_type
    try:
        values = gguf.quants.dequantize(tensor.data, qtype)
    except NotImplementedError as e:
        raise GGUFError(
            f"{path}: tensor {tensor.name!r} has unsupported type {getattr(qtype, 'name', qtype)} ({e})"
        ) from e
    return np.asarray(values, dtype=np.float32).reshape(shape)


class LazyGGUFTensor:
    """One HF-named GGUF tensor, dequantized on indexing: ``t[rows, cols]`` reads and dequantizes
    only the stored rows it needs (quantization blocks never cross rows), so a sharded load reads
    each device's block. ``.shape`` (HF layout), ``.path`` (the file), ``.gguf_type``."""

    def __init__(self, tensor: gguf.ReaderTensor, *, path: str, qk_heads: int | None = None):
        self._tensor = tensor
        self.path = path
        self.name = tensor.name
        self.shape = tuple(int(n) for n in reversed(tensor.shape))
        self.dtype = np.dtype(np.float32)
        self.gguf_type = tensor.tensor_type.name
        # HF row r is stored row _rows[r]: unpermuting is a pure row gather, so applying it to
        # arange gives the gather indices.
        self._rows = None if qk_heads is None else unpermute_qk(np.arange(self.shape[0]), qk_heads)

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, tuple):
            index = (index,)
        if len(self.shape) == 1 or not index or not isinstance(index[0], slice):
            return self.read()[index]
        rows = np.arange(self.shape[0])[index[0]]
        stored_rows = rows if self._rows is None else self._rows[rows]
        data = self._tensor.data.reshape(self.shape[0], -1)[stored_rows]
        try:
            values = gguf.quants.dequantize(data, self._tensor.tensor_type)
        except NotImplementedError as e:
            raise GGUFError(f"{self.path}: tensor {self.name!r} has unsupported type {self.gguf_type} ({e})") from e
        values = np.asarray(values, dtype=np.float32).reshape(len(rows), *self.shape[1:])
        return values[(slice(None),) + index[1:]]

    def read(self) -> np.ndarray:
        """The whole tensor, float32, HF layout."""
        value = dequantize_tensor(self._tensor, path=self.path)
        return value if self._rows is None else value[self._rows]

    def __array__(self, dtype=None, copy=None):
        value = self.read()
        return value if dtype is None else value.astype(dtype)


class GGUFTensors(collections.abc.Mapping):
    """HF-named, dequantized float32 tensors of a llama GGUF, read on access (never all at once).

    ``tensors["model.layers.0.self_attn.q_proj.weight"]`` -> ``np.ndarray [out, in]`` in HF layout
    (Q/K un-permuted). ``tensors.lazy()`` -> ``{name: LazyGGUFTensor}`` for loaders that read
    blocks (``hf_io.model_from_state_dict``). ``tensors.gguf_type(name)`` -> e.g. ``"Q4_1"``.
    """

    def __init__(self, reader: gguf.GGUFReader, config: dict[str, Any] | None = None):
        self._path = _path(reader)
        config = config or hf_config_from_gguf(reader)
        heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
        self._lazy: dict[str, LazyGGUFTensor] = {}
        for tensor in reader.tensors:
            name = hf_name(tensor.name, path=self._path)
            qk_heads = heads if ".self_attn.q_proj." in name else kv_heads if ".self_attn.k_proj." in name else None
            self._lazy[name] = LazyGGUFTensor(tensor, path=self._path, qk_heads=qk_heads)

    def __getitem__(self, name: str) -> np.ndarray:
        lazy = self._lazy.get(name)
        if lazy is None:
            raise KeyError(f"{self._path}: no tensor for {name!r}")
        return lazy.read()

    def __iter__(self) -> Iterator[str]:
        return iter(self._lazy)

    def __len__(self) -> int:
        return len(self._lazy)

    def lazy(self) -> dict[str, LazyGGUFTensor]:
        return dict(self._lazy)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._lazy[name].shape

    def gguf_type(self, name: str) -> str:
        return self._lazy[name].gguf_type


def read_gguf(path: str | os.PathLike) -> tuple[dict[str, Any], GGUFTensors, gguf.GGUFReader]:
    """Opens a llama GGUF: ``(hf_config_dict, lazy HF-named tensors, reader)``."""
    reader = open_gguf(path)
    config = hf_config_from_gguf(reader)
    return config, GGUFTensors(reader, config), reader
