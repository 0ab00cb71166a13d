"""Tokenizer on the real SmolLM2-135M-Instruct GGUF, against transformers' tokenizer of that GGUF.

Known differences of transformers 4.53's GGUF tokenizer (integrations/ggml.py, GGUFLlamaConverter),
which these tests work around rather than copy:
* it adds a BOS (<|im_start|>) on encode although the GGUF says add_bos_token=false and reports
  eos_token=<|im_start|>: ids are compared with add_special_tokens=False;
* it ignores tokenizer.ggml.pre="smollm" (llama.cpp splits every digit before the GPT-2 regex), so
  whitespace runs right before a digit tokenize differently; those texts are checked against
  llama.cpp's regexes + transformers' BPE instead (test_digit_split_follows_llama_cpp);
* it decodes with clean_up_tokenization_spaces=True: decode is compared with it turned off.
"""

import json
import os

import jinja2
import pytest
import regex

from alignax.data.tokenize import ChatTokenizer
from alignax.models import presets
from alignax.models.tokenizer import Tokenizer

TEXTS = [
    "Hello world",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\n\n\nend\r\nwindows",
    "3.14159 and 1,000,000 and 2024-01-31",
    "a 1 b 22",
    "naïve café ñandú Ünïcödé\u200b",
    "日本語のテキスト、中文字符，한국어",
    "emoji 🎉👍🏽 ok 👨‍👩‍👧",
    "def f(x):\n    return x**2  # comment\n\tpass",
    "<|im_start|>user\nhi<|im_end|>",
    "I'm we'll they've it's DON'T",
    "",
    "$$$ ### @@@ ~~~ ```python```",
]
# Whitespace runs directly before digits: llama.cpp's "smollm" split and plain GPT-2 differ here.
DIGIT_TEXTS = ["x  12", "value:\n\n  42", "tab\t\t7", "   0"]

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ],
    [
        {"role": "user", "content": "Write a haiku about JAX."},
        {"role": "assistant", "content": "Arrays flow like streams\njit compiles the quiet night\nXLA hums on"},
        {"role": "user", "content": "Now one in 日本語 🎌"},
        {"role": "assistant", "content": "配列の川\n  静かな夜に\t流れゆく"},
    ],
]


@pytest.fixture(scope="module")
def gguf_path():
    try:
        return presets.smollm2_135m_instruct_gguf()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def ours(gguf_path):
    return Tokenizer.from_gguf(gguf_path)


@pytest.fixture(scope="module")
def theirs(gguf_path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path))


@pytest.fixture(scope="module")
def saved_dir(ours, tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer")
    ours.save_pretrained(path)
    return path


def test_encode_matches_transformers(ours, theirs):
    for text in TEXTS:
        expected = theirs.encode(text, add_special_tokens=False)
        assert ours.encode(text, add_special_tokens=False) == expected, text
        assert ours.encode(text) == expected, text  # the GGUF asks for no BOS


def llama_cpp_smollm_ids(text, theirs):
    """llama.cpp's pre-tokenizer for tokenizer.ggml.pre == "smollm" (llama-vocab.cpp): split off
    every \\p{N}, then the GPT-2 regex; each piece is then BPE-encoded by transformers (one piece is
    one GPT-2 regex match, so transformers' own regex leaves it whole)."""
    gpt2 = regex.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
    pieces = []
    for chunk in regex.split(r"(\p{N})", text):
        pieces += gpt2.findall(chunk)
    assert "".join(pieces) == text
    return [i for piece in pieces for i in theirs.encode(piece, add_special_tokens=False)]


def test_digit_split_follows_llama_cpp(ours, theirs):
    for text in DIGIT_TEXTS + [t for t in TEXTS if "<|" not in t]:
        assert ours.encode(text) == llama_cpp_smollm_ids(text, theirs), text
    # The case the split exists for: without it "x  12" would start " 1" after one space.
    assert ours.encode("x  12") != theirs.encode("x  12", add_special_tokens=False)


def test_decode_round_trip_and_matches_transformers(ours, theirs):
    for text in TEXTS + DIGIT_TEXTS:
        ids = ours.encode(text)
        assert ours.decode(ids) == text
        assert ours.decode(ids) == theirs.decode(ids, clean_up_tokenization_spaces=False)
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )


def test_special_tokens_and_vocab(ours, theirs, gguf_path):
    import gguf

    reader = gguf.GGUFReader(gguf_path)
    meta = {
        k: reader.fields[f"tokenizer.ggml.{k}"].contents() for k in ("bos_token_id", "eos_token_id", "padding_token_id")
    }
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (
        meta["bos_token_id"],
        meta["eos_token_id"],
        meta["padding_token_id"],
    )
    assert ours.vocab_size == len(theirs) == 49152
    for token in (ours.bos_token, ours.eos_token, ours.pad_token, ours.unk_token):
        assert theirs.convert_tokens_to_ids(token) == ours.backend.token_to_id(token)
    assert set(ours.special_tokens()) == set(theirs.all_special_tokens) | set(
        t.content for t in theirs.added_tokens_decoder.values() if t.special
    )


@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_chat_template_matches_transformers(ours, theirs, conversation, add_generation_prompt):
    messages = CONVERSATIONS[conversation]
    kwargs = dict(add_generation_prompt=add_generation_prompt)
    assert ours.apply_chat_template(messages, tokenize=False, **kwargs) == theirs.apply_chat_template(
        messages, tokenize=False, **kwargs
    )
    assert ours.apply_chat_template(messages, **kwargs) == theirs.apply_chat_template(messages, **kwargs)


def test_template_features_like_transformers(ours, theirs):
    # tojson without HTML escaping, loop controls, raise_exception, trim/lstrip blocks, bos_token.
    template = (
        "{{ bos_token }}{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}\n"
        "  {{ m | tojson }}\n{% endfor %}{% if messages | length > 9 %}"
        "{{ raise_exception('too long') }}{% endif %}"
    )
    messages = [
        {"role": "user", "content": "<b>&'\"</b> é"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "dropped"},
    ]
    text = ours.apply_chat_template(messages, tokenize=False, chat_template=template)
    assert text == theirs.apply_chat_template(messages, tokenize=False, chat_template=template)
    # No second BOS: transformers' GGUF tokenizer adds BOS on encode, yet the template's one is the only one.
    ids = ours.apply_chat_template(messages, chat_template=template)
    assert ids == theirs.apply_chat_template(messages, chat_template=template)
    assert ids.count(ours.bos_token_id) == 1
    with pytest.raises(jinja2.TemplateError, match="too long"):
        ours.apply_chat_template(messages * 4, chat_template=template)


def test_template_is_sandboxed(ours):
    with pytest.raises(jinja2.exceptions.SecurityError):
        ours.apply_chat_template(
            [{"role": "user", "content": "x"}],
            tokenize=False,
            chat_template="{{ messages.__class__.__init__.__globals__ }}",
        )


def test_no_double_bos_with_bos_adding_tokenizer(ours):
    import tokenizers
    from tokenizers import processors

    backend = tokenizers.Tokenizer.from_str(ours.backend.to_str())
    bos = ours.bos_token
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, ours.bos_token_id)]
    )
    with_bos = Tokenizer(
        backend,
        bos_token=bos,
        eos_token=ours.eos_token,
        chat_template="{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}",
    )
    assert with_bos.encode("hi")[0] == ours.bos_token_id
    ids = with_bos.apply_chat_template([{"role": "user", "content": "hi"}])
    assert ids == [ours.bos_token_id] + ours.encode("hi")


def test_assistant_mask_matches_transformers_generation_tags(ours, theirs):
    # transformers marks assistant tokens only for templates with {% generation %} tags; the same
    # SmolLM2 template with the assistant content + end-of-turn tagged is the reference.
    tagged = (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\n' }}{% endif %}{{ '<|im_start|>' + message['role'] + '\n' }}"
        "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
        "{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    # The one chat-render-with-mask helper (alignax/data/tokenize.py) over alignax's tokenizer.
    chat = ChatTokenizer(ours)
    for messages in CONVERSATIONS[1:]:
        ids, mask = chat.conversation(messages, where="test")
        reference = theirs.apply_chat_template(
            messages, chat_template=tagged, return_dict=True, return_assistant_tokens_mask=True
        )
        # The helper drops what follows the last reply (formatting, a closing user turn: nothing
        # there is trained on); the reference's mask is 0 there.
        assert reference["input_ids"][: len(ids)] == ids
        assert list(reference["assistant_masks"]) == mask + [0] * (len(reference["input_ids"]) - len(ids))
        expected_text = "".join(m["content"] + ours.eos_token for m in messages if m["role"] == "assistant")
        assert ours.decode([i for i, m in zip(ids, mask) if m]) == expected_text


def test_save_pretrained_loads_in_transformers(ours, saved_dir):
    transformers = pytest.importorskip("transformers")
    reloaded = transformers.AutoTokenizer.from_pretrained(saved_dir)
    again = Tokenizer.from_dir(saved_dir)
    for text in TEXTS + DIGIT_TEXTS:
        assert reloaded.encode(text) == ours.encode(text), text
        assert again.encode(text) == ours.encode(text), text
        assert reloaded.decode(ours.encode(text)) == text
    for messages in CONVERSATIONS:
        for gen in (False, True):
            assert reloaded.apply_chat_template(messages, add_generation_prompt=gen) == ours.apply_chat_template(
                messages, add_generation_prompt=gen
            )
            assert again.apply_chat_template(messages, add_generation_prompt=gen) == ours.apply_chat_template(
                messages, add_generation_prompt=gen
            )
    assert (reloaded.bos_token, reloaded.eos_token, reloaded.pad_token) == (
        ours.bos_token,
        ours.eos_token,
        ours.pad_token,
    )
    assert (again.bos_token_id, again.eos_token_id, again.pad_token_id) == (1, 2, 2)
    config = json.loads((saved_dir / "tokenizer_config.json").read_text())
    assert config["chat_template"] == ours.chat_template


def test_from_gguf_rejects_other_tokenizer_models(tmp_path):
    import gguf

    path = tmp_path / "spm.gguf"
    writer = gguf.GGUFWriter(os.fspath(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "a"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=r"spm\.gguf.*tokenizer\.ggml\.model 'llama'"):
        Tokenizer.from_gguf(path)
