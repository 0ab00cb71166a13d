"""Every registered loss is trainable from its declared config, and configs are checked before tracing.

`alignax.losses.info(name)` declares what a loss needs; these tests hold the declarations to the
functions, run `train()` (what `python -m experiments.<stem>` calls) on every trainable name's tiny
preset, and check that a wrong pairing is an error naming the key before anything is traced.
"""

import importlib
import inspect
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from alignax import losses
from alignax.train import validate
from alignax.train.loop import train
from alignax.train.methods import MODEL_INPUTS

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

TRAINABLE = [name for name in losses.names() if losses.info(name).config]
PENDING = [name for name in losses.names() if losses.info(name).pending]
# Array arguments a loss may take but the engine does not pass (optional masks and extras).
OPTIONAL_ARRAYS = {
    "example_mask",
    "pair_mask",
    "margin",
    "chosen_nll",
    "chosen_lengths",
    "rejected_lengths",
    "ref_chosen_logps",
    "ref_rejected_logps",
    "ref_logps",
    "lengths",
    "num_tokens",
}


def tiny_config(name: str, **overrides):
    entry = losses.info(name)
    stem = entry.config[len("configs/") : -len(".py")]
    config = importlib.import_module(f"configs.{stem}").get_config("tiny")
    config.update_from_flattened_dict({"loss.name": name, **overrides})
    return config


def test_every_loss_says_how_it_is_trained():
    assert len(losses.names()) >= 35
    for name in losses.names():
        entry = losses.info(name)
        assert (entry.config is None) != (entry.pending is None), name
        if entry.config:
            assert (REPO_ROOT / entry.config).is_file(), (name, entry.config)
            assert entry.method in MODEL_INPUTS, (name, entry.method)
    # Only the losses that need rollouts or a draft model, and CUT's judgment path, wait for a pipeline.
    assert set(PENDING) <= {"crpg", "ppo", "ppo_policy", "ppo_value", "specdec_acceptance", "cut"}


@pytest.mark.parametrize("name", losses.names())
def test_declaration_matches_the_function(name):
    """Declared hyperparameters are the function's keyword defaults; declared inputs are parameters."""
    entry = losses.info(name)
    parameters = inspect.signature(entry.fn).parameters
    assert set(entry.inputs) <= set(parameters), (name, set(entry.inputs) - set(parameters))
    required = {k for k, p in parameters.items() if p.default is inspect.Parameter.empty}
    unset = {k for k, v in entry.hparams.items() if isinstance(v, losses.Unset)}
    assert required <= set(entry.inputs) | unset, (name, required - set(entry.inputs))
    defaults = {
        k: (None if p.default is inspect.Parameter.empty else p.default)
        for k, p in parameters.items()
        if k not in entry.inputs and k not in OPTIONAL_ARRAYS
    }
    declared = {k: (None if isinstance(v, losses.Unset) else v) for k, v in entry.hparams.items()}
    assert declared == defaults, name


@pytest.mark.parametrize("name", TRAINABLE)
def test_every_trainable_loss_trains_two_steps(tmp_path, name):
    """`python -m experiments.<stem> --config configs/<stem>.py:tiny --config.loss.name=<name>` (run in
    process: `train` is what the entry point calls) trains 2 steps with finite losses."""
    config = tiny_config(name, total_steps=2, checkpoint_every=100, eval_batches=0, export=False)
    summary = train(config, str(tmp_path))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses_logged = [r["loss"] for r in records if "loss" in r]
    assert len(losses_logged) == 2 and all(math.isfinite(v) for v in losses_logged), (name, losses_logged)
    assert summary["final_step"] == 2


def test_readme_example_ipo_from_the_dpo_config(tmp_path):
    """The README's example that stopped at the first step (`label_smoothing` passed to ipo)."""
    command = [
        sys.executable,
        "-m",
        "experiments.dpo",
        "--config",
        "configs/dpo.py:tiny",
        "--workdir",
        str(tmp_path),
        "--config.loss.name=ipo",
        "--config.total_steps=2",
        "--config.eval_batches=0",
        "--config.export=False",
        "--config.loss.hparams.beta=0.2",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: step 2" in result.stdout
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["loss"]["name"] == "ipo" and saved["loss"]["hparams"]["beta"] == 0.2


def test_unset_hyperparameters_take_the_loss_defaults():
    config = tiny_config("ln_dpo")
    assert validate.check_config(config) == {}  # ln_dpo's beta 10 applies, not another loss's 0.1
    config.loss.hparams.beta = 0.5
    assert validate.check_config(config) == {"beta": 0.5}


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("loss.hparams.label_smoothing", 0.1, ["loss.hparams.label_smoothing", "'ipo'", "beta", "length_normalize"]),
        ("loss.hparams.beta", -1.0, ["loss.hparams.beta", "positive"]),
        ("total_steps", -3, ["config.total_steps", "positive integer"]),
        ("batch_size", 0, ["config.batch_size", "positive integer"]),
        ("optimizer.learning_rate", -1e-5, ["optimizer.learning_rate", ">= 0"]),
        ("logprob_vocab_chunk_size", -1, ["logprob_vocab_chunk_size"]),
    ],
)
def test_bad_config_values_name_the_key(key, value, words):
    config = importlib.import_module("configs.dpo").get_config("tiny")
    config.update_from_flattened_dict({"loss.name": "ipo", key: value})
    with pytest.raises(validate.ConfigError) as error:
        validate.check_config(config)
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_loss_of_another_method_names_its_config():
    config = importlib.import_module("configs.dpo").get_config("tiny")
    config.loss.name = "kto"
    with pytest.raises(validate.ConfigError, match=r"experiments.kto --config configs/kto.py:tiny"):
        validate.check_config(config)


@pytest.mark.parametrize("name", PENDING)
def test_pending_losses_say_what_they_wait_for(name):
    config = importlib.import_module("configs.dpo").get_config("tiny")
    config.loss.name = name
    with pytest.raises(validate.ConfigError, match="cannot be trained yet: needs"):
        validate.check_config(config)


def test_missing_data_field_names_the_field_and_the_file(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": "no"}) + "\n" for i in range(8))
    )
    config = tiny_config("sppo", **{"data.train": str(data), "data.eval": "", "total_steps": 1})
    with pytest.raises(ValueError, match=r"pairs.jsonl: record 0 has no field 'chosen_win_probs'"):
        train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_kto_feed_adds_mismatched_kl_sequences():
    """KTO's z0 comes from (x_i, y_{i-1}) pairs, as in TRL, not from the matched (x_i, y_i)."""
    from alignax.train import feed as feed_lib
    from alignax.train import modeling

    config = importlib.import_module("configs.kto").get_config("tiny")
    config.update_from_flattened_dict({"data.shuffle": False})
    tokenizer = modeling.load_tokenizer(config.model)
    feed = feed_lib.make_feed(config, tokenizer, split="train", rows_multiple=1)
    batch = next(feed)
    size = config.batch_size
    assert feed.num_sides == 2 and sorted(batch["sequence_index"][batch["sequence_index"] >= 0]) == list(
        range(2 * size)
    )
    examples = feed.examples[:size]

    def tokens(sequence):
        row, slot = (int(i[0]) for i in np.nonzero(batch["sequence_index"] == sequence))
        return batch["input_ids"][row][batch["segment_ids"][row] == slot + 1]

    for j in range(size):
        prompt_j, completion_prev = examples[j].sequences[0], examples[j - 1].sequences[0]
        expected = np.concatenate(
            [prompt_j.input_ids[: prompt_j.prompt_length], completion_prev.input_ids[completion_prev.prompt_length :]]
        )
        np.testing.assert_array_equal(tokens(size + j), expected)
        np.testing.assert_array_equal(tokens(j), examples[j].sequences[0].input_ids)
        row, slot = (int(i[0]) for i in np.nonzero(batch["sequence_index"] == j))
        assert batch["field/label"][row, slot] == float(examples[j].scalars["label"])
