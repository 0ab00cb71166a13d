"""Every tiny preset overfits a 4-example set: its own loss falls by at least half in STEPS steps.

A loss whose gradient is wrong in sign or wired to the wrong inputs does not fall; finite losses
alone would not show it."""

import importlib
import json

import pytest

from alignax.data.builtin import builtin_path
from alignax.train.loop import train

STEPS = 60
PRESETS = ["dpo", "ipo", "simpo", "orpo", "kto", "sft", "soft", "reward_model", "scored_samples"]
# SPPO's per-sample regression targets are (P - 1/2)/beta: with the paper's beta 0.001 they are
# hundreds of nats, which no model reaches in a test's few steps; at 0.1 they are a few nats.
OVERRIDES = {"scored_samples": {"loss.hparams.beta": 0.1}}


def four_examples(config, tmp_path) -> str:
    """The preset's own training data, cut to its first 4 records."""
    source = config.data.train
    assert source.startswith("builtin:"), source
    with open(builtin_path(source[len("builtin:") :])) as f:
        records = [json.loads(line) for line in f][:4]
    path = tmp_path / "four.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.mark.parametrize("name", PRESETS)
def test_tiny_preset_overfits_four_examples(tmp_path, name):
    config = importlib.import_module(f"configs.{name}").get_config("tiny")
    config.update_from_flattened_dict(
        {
            "data.train": four_examples(config, tmp_path),
            "data.eval": "",
            "data.shuffle": False,
            "batch_size": 4,
            "total_steps": STEPS,
            "checkpoint_every": STEPS,
            "eval_batches": 0,
            "export": False,
            "optimizer.schedule": "constant",
            **OVERRIDES.get(name, {}),
        }
    )
    train(config, str(tmp_path / "run"))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == STEPS
    assert losses[-1] <= 0.5 * losses[0], (name, losses[0], losses[-1])
