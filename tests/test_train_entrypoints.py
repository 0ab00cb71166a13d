"""Every entry point's tiny preset runs end to end and writes the run's files (DESIGN.md contract):
metrics.jsonl (step, loss), TensorBoard events, Orbax checkpoints, export/ (loaded by transformers'
AutoModelForCausalLM for SFT and equal to the final checkpoint's weights), curves.png, summary.json.
Unknown config keys on the command line are errors."""

import importlib
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from alignax.train.loop import train

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
ENTRY_POINTS = ["sft", "dpo", "simpo", "ipo", "kto", "orpo", "reward_model", "soft"]
STEPS = 2


def run_tiny(name, workdir):
    importlib.import_module(f"experiments.{name}")  # the entry point module exists and imports
    config = importlib.import_module(f"configs.{name}").get_config("tiny")
    config.update_from_flattened_dict({"total_steps": STEPS, "checkpoint_every": 1, "data.length_multiple": 64})
    return config, train(config, str(workdir))


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sft")
    config, summary = run_tiny("sft", workdir)
    return workdir, config, summary


def check_run_files(workdir: pathlib.Path, config, summary):
    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    train_records = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_records] == list(range(1, STEPS + 1))
    assert all(math.isfinite(r["loss"]) for r in train_records)
    if config.data.eval:
        assert any("eval/loss" in r for r in records)
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == [str(STEPS - 1), str(STEPS)]
    assert (workdir / "export" / "config.json").is_file() and (workdir / "export" / "model.safetensors").is_file()
    assert (workdir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads((workdir / "summary.json").read_text())
    assert written["final_step"] == STEPS and written["train"]["loss"] == pytest.approx(train_records[-1]["loss"])
    assert summary["final_step"] == STEPS


@pytest.mark.parametrize("name", [n for n in ENTRY_POINTS if n != "sft"])
def test_entry_point_tiny_preset(tmp_path, name):
    config, summary = run_tiny(name, tmp_path)
    check_run_files(tmp_path, config, summary)


def test_sft_run_files(sft_run):
    check_run_files(*sft_run)


def test_export_loads_in_transformers_with_the_trained_weights(sft_run):
    import torch
    import transformers

    workdir, config, _ = sft_run
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(workdir / "export", torch_dtype=torch.float32)
    assert hf_model.config.num_hidden_layers == config.random_init.num_hidden_layers
    trained = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(STEPS) / "state")["params"]
    # The embedding is the only [vocab, hidden] parameter; it must be the final step's, not the start's.
    leaves = [np.asarray(x) for x in __import__("jax").tree.leaves(trained)]
    vocab, hidden = hf_model.config.vocab_size, hf_model.config.hidden_size
    embedding = [x for x in leaves if x.shape == (vocab, hidden)]
    assert len(embedding) == 1
    np.testing.assert_array_equal(hf_model.get_input_embeddings().weight.detach().numpy(), embedding[0])
    # And transformers runs it: finite logits of the right shape.
    with torch.no_grad():
        logits = hf_model(torch.tensor([[1, 2, 3, 4]])).logits
    assert logits.shape == (1, 4, vocab) and torch.isfinite(logits).all()


def test_unknown_config_key_is_an_error(tmp_path):
    command = [
        sys.executable,
        "-m",
        "experiments.sft",
        "--config",
        "configs/sft.py:tiny",
        "--workdir",
        str(tmp_path / "run"),
        "--config.nope=1",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "nope" in result.stderr and "unknown config key" in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
