"""Hub ids through huggingface_hub's cache, with a cache folder the test prepares (no network).

The cache layout is huggingface_hub's: `models--{org}--{name}/refs/main` holds the commit hash and
`models--{org}--{name}/snapshots/{hash}/` the files. HF_HUB_OFFLINE=1 (conftest) makes
`alignax.models.load` read the cache only.
"""

import json

import numpy as np
import pytest
import tokenizers
from flax import nnx

import alignax.models as models
from alignax.models import hf_io, hub
from alignax.models.qwen2 import Qwen2, Qwen2Config

REPO_ID = "alignax-test/tiny-qwen2"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _write_tokenizer(folder):
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, 256)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"})
    )


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """(cache dir, the saved model): a tiny random Qwen2 stored as hub model REPO_ID @ COMMIT."""
    cache = tmp_path_factory.mktemp("hub_cache")
    repo = cache / ("models--" + REPO_ID.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    model = Qwen2(Qwen2Config.tiny(tie_word_embeddings=True), rngs=nnx.Rngs(3))
    models.save_hf(model, None, snapshot)
    _write_tokenizer(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return cache, model


@pytest.fixture
def offline_cache(hub_cache, monkeypatch):
    cache, model = hub_cache
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache, model


def _assert_same_weights(a, b):
    got, want = hf_io.state_dict_from_model(a), hf_io.state_dict_from_model(b)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_hub_id_loads_from_the_cache_offline(offline_cache):
    _, saved = offline_cache
    model, tokenizer = models.load(REPO_ID)
    assert isinstance(model, Qwen2) and model.cfg == saved.cfg
    _assert_same_weights(model, saved)
    assert tokenizer is not None and tokenizer.eos_token_id == 2
    # a revision by commit hash, and by branch name (refs/main)
    for revision in (COMMIT, "main"):
        again, _ = models.load(REPO_ID, revision=revision)
        _assert_same_weights(again, saved)


def test_missing_hub_id_offline_names_it_and_the_cache(offline_cache):
    cache, _ = offline_cache
    with pytest.raises(hub.HubModelNotFound) as info:
        models.load("mistralai/Mistral-7B-Instruct-v0.2")
    message = str(info.value)
    assert "'mistralai/Mistral-7B-Instruct-v0.2' is not in the local cache" in message
    assert str(cache) in message and "HF_HUB_OFFLINE=1" in message
    assert "huggingface-cli download mistralai/Mistral-7B-Instruct-v0.2" in message
    assert isinstance(info.value, FileNotFoundError)  # callers catching a missing source still do
    with pytest.raises(hub.HubModelNotFound, match="revision 'v9' of hub model"):
        models.load(REPO_ID, revision="v9")


def test_online_resolution_downloads_only_what_the_loader_reads(hub_cache, monkeypatch):
    """Online (HF_HUB_OFFLINE unset), snapshot_download is asked to fetch into the configured cache,
    safetensors and config/tokenizer files only (never pickled weights). Faked: no network."""
    import huggingface_hub

    cache, saved = hub_cache
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(cache / ("models--" + REPO_ID.replace("/", "--")) / "snapshots" / COMMIT)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    model, _ = models.load(REPO_ID)
    _assert_same_weights(model, saved)
    ((repo_id, kwargs),) = calls
    assert repo_id == REPO_ID and kwargs["local_files_only"] is False and kwargs["cache_dir"] == str(cache)
    patterns = kwargs["allow_patterns"]
    assert "*.safetensors" in patterns and "config.json" in patterns and "tokenizer.json" in patterns
    assert not any(p.endswith((".bin", ".pt", ".pth")) for p in patterns)


def test_existing_paths_win_over_hub_ids(hub_cache, tmp_path, monkeypatch):
    """`org/name` that exists on disk is a folder, not a hub id; other sources are never hub ids."""
    _, saved = hub_cache
    monkeypatch.chdir(tmp_path)
    models.save_hf(saved, None, tmp_path / "alignax-test" / "local-copy")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    assert not hub.is_hub_id("alignax-test/local-copy")
    model, tokenizer = models.load("alignax-test/local-copy")
    _assert_same_weights(model, saved)
    assert tokenizer is None
    assert hub.is_hub_id("Qwen/Qwen2.5-0.5B-Instruct") and hub.is_hub_id("google/gemma-2-2b-it")
    for source in ("/abs/dir", "a/b/c", "model.gguf", "smollm2-135m-instruct", "../x", "org/..", "", None):
        assert not hub.is_hub_id(source), source
