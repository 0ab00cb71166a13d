"""`hf://ORG/NAME[:SPLIT]` data sources through huggingface_hub's cache, with a cache folder the
test prepares (no network).

The cache layout is huggingface_hub's: `datasets--{org}--{name}/refs/main` holds the commit hash
and `datasets--{org}--{name}/snapshots/{hash}/` the repository's files, here in the hub's Parquet
layout (`data/{split}-00000-of-00001.parquet`, as HuggingFaceH4/ultrafeedback_binarized) plus a
JSONL split. HF_HUB_OFFLINE=1 (conftest) makes the readers use the cache only.
"""

import json

import huggingface_hub
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alignax.data import load_dataset, readers

UF = "alignax-test/tiny_ultrafeedback"  # UltraFeedback-binarized columns, Parquet splits + a JSONL split
PLAIN = "alignax-test/tiny_plain"  # train.jsonl at the root, refs/convert/parquet style test split
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _conv(prompt, answer):
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def _uf_rows(split, n):
    rows = []
    for i in range(n):
        prompt = f"{split} question {i}: what is {i}+{i}?"
        chosen, rejected = _conv(prompt, f"It is {2 * i}."), _conv(prompt, f"It is {2 * i + 1}.")
        rows.append(
            {
                "prompt": prompt,
                "prompt_id": f"{split}-{i:04d}",
                "chosen": chosen,
                "rejected": rejected,
                "messages": chosen,
                "score_chosen": 8.0 + i,
                "score_rejected": 2.0,
            }
        )
    return rows


def _write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _repo(cache, repo_id):
    repo = cache / ("datasets--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (snapshot / "README.md").write_text("---\nlicense: mit\n---\n")
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hub_cache")
    snapshot = _repo(cache, UF)
    (snapshot / "data").mkdir()
    for split, n in (("train_prefs", 5), ("test_prefs", 2)):
        pq.write_table(pa.Table.from_pylist(_uf_rows(split, n)), snapshot / "data" / f"{split}-00000-of-00001.parquet")
    _write_jsonl(snapshot / "data" / "train_sft-00000-of-00001.jsonl", [{"messages": _conv("Hi", "Hello!")}] * 3)

    snapshot = _repo(cache, PLAIN)
    _write_jsonl(
        snapshot / "train.jsonl",
        [{"id": f"p{i}", "prompt": f"Say {i}.", "chosen": f"{i}.", "rejected": "No."} for i in range(4)],
    )
    test_rows = [{"prompt": "Say x.", "chosen": "x.", "rejected": "y."}]
    for shard in ("0000", "0001"):
        (snapshot / "default" / "test").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(test_rows), snapshot / "default" / "test" / f"{shard}.parquet")
    return cache


@pytest.fixture
def offline_cache(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache


def test_ultrafeedback_style_parquet_split_loads_as_preference_pairs(offline_cache):
    loaded = load_dataset(f"hf://{UF}:train_prefs", task="preference")
    assert loaded.report.total == 0
    examples = loaded.examples
    assert len(examples) == 5
    want = _uf_rows("train_prefs", 5)
    for i, example in enumerate(examples):
        # chosen/rejected message lists sharing the user turn: the prompt is that turn
        assert example.prompt == ({"role": "user", "content": want[i]["prompt"]},)
        assert example.chosen == f"It is {2 * i}." and example.rejected == f"It is {2 * i + 1}."
        assert example.fields == {"score_chosen": 8.0 + i, "score_rejected": 2.0}
    # each example is located in the cached file, by row
    assert examples.locations[3].endswith("data/train_prefs-00000-of-00001.parquet row 3")
    assert f"datasets--{UF.replace('/', '--')}" in examples.locations[3]


def test_split_selection_and_default_split(offline_cache):
    test = load_dataset(f"hf://{UF}:test_prefs", task="preference").examples
    assert [e.prompt[0]["content"] for e in test] == [r["prompt"] for r in _uf_rows("test_prefs", 2)]
    sft = load_dataset(f"hf://{UF}:train_sft", task="sft").examples  # the JSONL split
    assert len(sft) == 3 and sft[0].messages[-1] == {"role": "assistant", "content": "Hello!"}
    plain = load_dataset(f"hf://{PLAIN}", task="preference").examples  # no split: "train"
    assert [e.id for e in plain] == ["p0", "p1", "p2", "p3"]
    # refs/convert/parquet layout (CONFIG/SPLIT/0000.parquet), with or without the configuration
    for source in (f"hf://{PLAIN}:test", f"hf://{PLAIN}:default/test", f"hf://{PLAIN}@main:test"):
        assert len(load_dataset(source, task="preference").examples) == 2
    # a list of sources mixes hub splits and local files alike
    both = load_dataset([f"hf://{UF}:test_prefs", f"hf://{PLAIN}:train"], task="preference")
    assert len(both.examples) == 6


def test_unknown_split_lists_the_splits(offline_cache):
    with pytest.raises(readers.HubSplitNotFound) as info:
        load_dataset(f"hf://{UF}:train", task="preference")
    assert info.value.available == ["test_prefs", "train_prefs", "train_sft"]
    message = str(info.value)
    assert "split 'train' not found; splits: test_prefs, train_prefs, train_sft" in message
    assert UF in message
    with pytest.raises(readers.HubSplitNotFound, match="configuration 'other'"):
        load_dataset(f"hf://{PLAIN}:other/test", task="preference")


def test_uncached_dataset_offline_says_how_to_fetch_it(offline_cache):
    with pytest.raises(readers.HubDatasetNotFound) as info:
        load_dataset("hf://HuggingFaceH4/ultrafeedback_binarized:train_prefs", task="preference")
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert "'HuggingFaceH4/ultrafeedback_binarized' is not in the local cache" in message
    assert str(offline_cache) in message and "HF_HUB_OFFLINE=1" in message
    assert "huggingface-cli download --repo-type dataset HuggingFaceH4/ultrafeedback_binarized" in message
    assert "data.train" in message


def test_bad_hub_source_is_rejected(offline_cache):
    for source in ("hf://", "hf://a/b/c", "hf://a/b:x:y", "hf://../x"):
        with pytest.raises(ValueError, match="bad hub data source"):
            load_dataset(source, task="preference")


def test_online_fetches_only_the_requested_split(hub_cache, monkeypatch):
    """Online: the repository's file list picks the split and only its files are downloaded."""
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    repo_files = [
        ".gitattributes",
        "README.md",
        "data/test_prefs-00000-of-00001.parquet",
        "data/train_prefs-00000-of-00001.parquet",
        "data/train_sft-00000-of-00001.jsonl",
        "data/train_gen-00000-of-00001.parquet",
    ]
    calls = []

    def list_repo_files(self, repo_id, *, repo_type=None, revision=None, **kwargs):
        calls.append(("list", repo_id, repo_type))
        return repo_files

    def snapshot_download(repo_id, *, repo_type=None, cache_dir=None, allow_patterns=None, **kwargs):
        calls.append(("download", repo_id, repo_type, cache_dir, list(allow_patterns)))
        return str(hub_cache / ("datasets--" + repo_id.replace("/", "--")) / "snapshots" / COMMIT)

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    loaded = load_dataset(f"hf://{UF}:train_prefs", task="preference")
    assert len(loaded.examples) == 5
    assert calls == [
        ("list", UF, "dataset"),
        ("download", UF, "dataset", str(hub_cache), ["data/train_prefs-00000-of-00001.parquet"]),
    ]
    calls.clear()
    with pytest.raises(readers.HubSplitNotFound, match="splits: test_prefs, train_gen, train_prefs, train_sft"):
        load_dataset(f"hf://{UF}:validation", task="preference")
    assert [c[0] for c in calls] == ["list"]  # nothing downloaded for a split that is not there


def test_training_config_reads_hf_sources_through_the_trainer_path(offline_cache):
    """A config whose data.train / data.eval are hf:// sources validates, and the trainer's
    load_split reads and tokenizes them (no model, no training)."""
    from alignax.train import feed as feed_lib
    from alignax.train import validate
    from alignax.train.modeling import load_tokenizer
    from configs import dpo

    config = dpo.get_config("tiny")
    config.data.train = f"hf://{UF}:train_prefs"
    config.data.eval = f"hf://{UF}:test_prefs"
    validate.check_config(config)
    tokenizer = load_tokenizer(config.model)
    for split, expected in (("train", 5), ("eval", 2)):
        tokenized = feed_lib.load_split(config, tokenizer, split=split)
        assert len(tokenized.examples) == expected
        for example in tokenized.examples:
            assert len(example.sequences) == 2 and all(s.loss_mask.sum() > 0 for s in example.sequences)
    config.data.train = f"hf://{UF}:validation"
    with pytest.raises(readers.HubSplitNotFound, match="splits: test_prefs, train_prefs, train_sft"):
        feed_lib.load_split(config, tokenizer, split="train")
