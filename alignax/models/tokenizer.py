"""Tokenizer: a ``tokenizers.Tokenizer`` plus special tokens and the checkpoint's chat template.

Sources: a Hugging Face folder (tokenizer.json + tokenizer_config.json [+ chat_template.jinja]) or
GGUF metadata (``tokenizer.ggml.*``; byte-level BPE, ``tokenizer.ggml.model == "gpt2"``).

Chat templates render exactly as transformers renders them (utils/chat_template_utils.py
``_compile_jinja_template``): Jinja2 ``ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True)`` with the loopcontrols extension, a ``tojson`` filter that does not escape
HTML, ``raise_exception`` and ``strftime_now`` globals, and the special-token strings as variables;
under a time and size budget (``alignax.models.chat_template``).
The rendered text is then tokenized *without* adding special tokens, as transformers does, so a
template that writes its own BOS never gets a second one.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Sequence

import numpy as np
import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors

from alignax.models import chat_template as chat_template_lib

Message = dict[str, Any]

# GGUF token types (gguf-py constants.TokenType).
_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4

# llama.cpp's pre-tokenizer names (tokenizer.ggml.pre) -> how its regexes split text before BPE
# (llama-vocab.cpp, ``llm_tokenizer_bpe``). The "starcoder" family, SmolLM2 included, splits every
# digit on its own ("\p{N}") before the GPT-2 regex; the GPT-2 family uses the GPT-2 regex alone.
_DIGIT_SPLIT_PRE = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
_GPT2_PRE = {"default", "gpt2", "gpt-2", "mpt", "olmo", "jais"}
_LLAMA3_PRE = {"llama-bpe", "llama3", "llama-v3"}
# Llama 3's split regex (tokenizer.json of Meta-Llama-3; llama.cpp LLAMA_VOCAB_PRE_TYPE_LLAMA3).
_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_level_pre_tokenizer(pre: str, *, path: str) -> pre_tokenizers.PreTokenizer:
    if pre in _DIGIT_SPLIT_PRE:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    if pre in _GPT2_PRE:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _LLAMA3_PRE:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_LLAMA3_PATTERN), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    raise ValueError(
        f"{path}: unsupported tokenizer.ggml.pre {pre!r}; supported: "
        f"{sorted(_DIGIT_SPLIT_PRE | _GPT2_PRE | _LLAMA3_PRE)}"
    )


def _token_content(value: Any, config_file: str = "tokenizer_config.json", key: str = "token") -> str | None:
    """tokenizer_config.json stores special tokens as strings or AddedToken dicts."""
    if isinstance(value, dict):
        value = value.get("content")
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{config_file}: {key}={value!r} must be a string or an AddedToken object")
    return value


def _read_tokenizer_config(config_file: str) -> dict[str, Any]:
    """tokenizer_config.json as a dict; an error naming the file for bad JSON or a non-object."""
    try:
        with open(config_file, encoding="utf-8") as f:
            config = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_file}: line {e.lineno}: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{config_file}: not UTF-8 text ({e})") from e
    if not isinstance(config, dict):
        raise ValueError(f"{config_file}: expected a JSON object, got {type(config).__name__}")
    return config


def _chat_template_from_config(config: dict[str, Any], config_file: str) -> str | None:
    """The default chat template: a string, or [{"name": "default", "template": ...}, ...]."""
    template = config.get("chat_template")
    if isinstance(template, list):
        if not all(isinstance(t, dict) for t in template):
            raise ValueError(f"{config_file}: chat_template list entries must be objects")
        template = {t.get("name"): t.get("template") for t in template}.get("default")
    if template is not None and not isinstance(template, str):
        raise ValueError(f"{config_file}: chat_template must be a string, got {type(template).__name__}")
    return template


class Tokenizer:
    """Byte-level BPE (or any ``tokenizers`` model) with special tokens and a chat template.

    Attributes: ``bos_token_id``, ``eos_token_id``, ``pad_token_id`` (None when absent),
    ``vocab_size`` (base vocabulary + added tokens), ``chat_template`` (Jinja source or None).
    """

    def __init__(
        self,
        tokenizer: tokenizers.Tokenizer,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        unk_token: str | None = None,
        chat_template: str | None = None,
        model_max_length: int | None = None,
    ):
        self._tokenizer = tokenizer
        self.bos_token, self.eos_token = bos_token, eos_token
        self.pad_token, self.unk_token = pad_token, unk_token
        self.chat_template = chat_template
        self.model_max_length = model_max_length
        for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
            token = getattr(self, name)
            if token is not None and tokenizer.token_to_id(token) is None:
                raise ValueError(f"{name} {token!r} is not in the vocabulary")

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> "Tokenizer":
        """From an HF folder: tokenizer.json, tokenizer_config.json, optional chat_template.jinja."""
        path = os.fspath(path)
        tokenizer_file = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(tokenizer_file):
            raise FileNotFoundError(f"no tokenizer.json in {path}")
        try:
            backend = tokenizers.Tokenizer.from_file(tokenizer_file)
        except Exception as e:  # noqa: BLE001 - the Rust side raises a bare Exception
            raise ValueError(f"{tokenizer_file}: not a valid tokenizers file ({e})") from e
        config_file = os.path.join(path, "tokenizer_config.json")
        config = _read_tokenizer_config(config_file) if os.path.isfile(config_file) else {}
        template = _chat_template_from_config(config, config_file)
        jinja_file = os.path.join(path, "chat_template.jinja")
        if os.path.isfile(jinja_file):  # newer transformers save the template here
            try:
                with open(jinja_file, encoding="utf-8") as f:
                    template = f.read()
            except UnicodeDecodeError as e:
                raise ValueError(f"{jinja_file}: not UTF-8 text ({e})") from e
        special = {
            name: _token_content(config.get(name), config_file, name)
            for name in ("bos_token", "eos_token", "pad_token", "unk_token")
        }
        max_length = config.get("model_max_length")
        if max_length is not None and (not isinstance(max_length, (int, float)) or isinstance(max_length, bool)):
            raise ValueError(f"{config_file}: model_max_length={max_length!r} must be a number")
        try:
            return cls(backend, chat_template=template, model_max_length=max_length, **special)
        except ValueError as e:
            raise ValueError(f"{config_file}: {e}") from e

    @classmethod
    def from_gguf(cls, reader_or_path) -> "Tokenizer":
        """From GGUF ``tokenizer.ggml.*`` metadata (byte-level BPE only: ``model == "gpt2"``).

        Built like transformers' GGUF converters (integrations/ggml.py, GPT2Converter): a BPE model
        over ``tokens``/``merges``, a ByteLevel decoder, CONTROL tokens added as special tokens and
        USER_DEFINED ones as plain added tokens; the pre-tokenizer follows ``tokenizer.ggml.pre``
        as llama.cpp does (see ``_byte_level_pre_tokenizer``); a BOS post-processor only when
        ``tokenizer.ggml.add_bos_token`` is true.
        """
        from alignax.models import gguf_io  # local: gguf_io does not need the tokenizer

        reader = (
            reader_or_path if not isinstance(reader_or_path, (str, os.PathLike)) else gguf_io.open_gguf(reader_or_path)
        )
        path = gguf_io._path(reader)
        get = functools.partial(gguf_io.field_value, reader)
        kind = get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise ValueError(f"{path}: tokenizer.ggml.model {kind!r} is not supported (only byte-level BPE, 'gpt2')")
        tokens = get("tokenizer.ggml.tokens")
        merges = get("tokenizer.ggml.merges")
        if not tokens or merges is None:
            raise ValueError(f"{path}: tokenizer.ggml.tokens / tokenizer.ggml.merges missing")
        token_types = get("tokenizer.ggml.token_type") or [1] * len(tokens)
        vocab = {token: i for i, token in enumerate(tokens)}
        bpe = models.BPE(
            vocab=vocab,
            merges=[tuple(m.split(" ", 1)) for m in merges],
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
        backend = tokenizers.Tokenizer(bpe)
        backend.pre_tokenizer = _byte_level_pre_tokenizer(get("tokenizer.ggml.pre", "default"), path=path)
        backend.decoder = decoders.ByteLevel()
        types = np.asarray(token_types)
        backend.add_special_tokens(
            [
                AddedToken(tokens[i], special=True, normalized=False)
                for i in np.flatnonzero(types == _TOKEN_TYPE_CONTROL)
            ]
        )
        backend.add_tokens(
            [
                AddedToken(tokens[i], special=False, normalized=False)
                for i in np.flatnonzero(types == _TOKEN_TYPE_USER_DEFINED)
            ]
        )

        def token(key):
            index = get(key)
            if index is None:
                return None
            if not 0 <= index < len(tokens):
                raise ValueError(f"{path}: {key}={index} is outside the vocabulary ({len(tokens)})")
            return tokens[index]

        bos = token("tokenizer.ggml.bos_token_id")
        if get("tokenizer.ggml.add_bos_token", False) and bos is not None:
            backend.post_processor = processors.TemplateProcessing(
                single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 $B:1", special_tokens=[(bos, vocab[bos])]
            )
        else:
            backend.post_processor = processors.ByteLevel(trim_offsets=False)
        return cls(
            backend,
            bos_token=bos,
            eos_token=token("tokenizer.ggml.eos_token_id"),
            pad_token=token("tokenizer.ggml.padding_token_id"),
            unk_token=token("tokenizer.ggml.unknown_token_id"),
            chat_template=get("tokenizer.chat_template"),
            model_max_length=get(f"{get('general.architecture', 'llama')}.context_length"),
        )

    # ------------------------------------------------------------------ basic API

    @property
    def backend(self) -> tokenizers.Tokenizer:
        return self._tokenizer

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._tokenizer.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def special_tokens(self) -> list[str]:
        """The special (added, special=True) tokens' strings."""
        return [t.content for t in self._tokenizer.get_added_tokens_decoder().values() if t.special]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_with_offsets(self, text: str, add_special_tokens: bool = False):
        """``(ids, [(start_char, end_char), ...])``."""
        encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return encoding.ids, encoding.offsets

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def __len__(self) -> int:
        return self.vocab_size

    # ------------------------------------------------------------------ chat templates

    def render_chat(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = False,
        chat_template: str | None = None,
        **template_kwargs,
    ) -> str:
        """The chat template rendered to text (transformers' ``tokenize=False`` output)."""
        template = chat_template or self.chat_template
        if template is None:
            raise ValueError("this tokenizer has no chat_template; pass chat_template=...")
        variables = dict(
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            pad_token=self.pad_token,
            unk_token=self.unk_token,
            tools=None,
            documents=None,
        )
        variables.update(template_kwargs)
        # Under a time and size budget: the template is code shipped with the checkpoint.
        return chat_template_lib.render(
            template, messages=list(messages), add_generation_prompt=add_generation_prompt, **variables
        )

    def apply_chat_template(
        self, messages: Sequence[Message], add_generation_prompt: bool = False, tokenize: bool = True, **template_kwargs
    ):
        """Token ids of the rendered conversation (or the text when ``tokenize=False``).

        As in transformers, the text is tokenized with ``add_special_tokens=False``: the template
        writes BOS itself where the model wants one.
        """
        text = self.render_chat(messages, add_generation_prompt=add_generation_prompt, **template_kwargs)
        if not tokenize:
            return text
        return self.encode(text, add_special_tokens=False)

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json, loadable by
        transformers' ``AutoTokenizer.from_pretrained(path)`` (as a PreTrainedTokenizerFast)."""
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        self._tokenizer.save(os.path.join(path, "tokenizer.json"))
        special = {
            name: getattr(self, name)
            for name in ("bos_token", "eos_token", "pad_token", "unk_token")
            if getattr(self, name) is not None
        }
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            # Decoding must be the inverse of byte-level encoding; no space clean-up.
            "clean_up_tokenization_spaces": False,
            **special,
        }
        if self.model_max_length is not None:
            config["model_max_length"] = int(self.model_max_length)
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
        with open(os.path.join(path, "special_tokens_map.json"), "w", encoding="utf-8") as f:
            json.dump(special, f, indent=2, ensure_ascii=False)
