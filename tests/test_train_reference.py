"""`reference: precomputed`: one cached pass of the starting model replaces the reference in memory,
and trains exactly as the on-the-fly reference does."""

import importlib
import json

import numpy as np
import pytest

from alignax.train import validate
from alignax.train.loop import train


def tiny(name="dpo", **overrides):
    config = importlib.import_module(f"configs.{name}").get_config("tiny")
    config.update_from_flattened_dict(
        {"total_steps": 2, "checkpoint_every": 100, "eval_batches": 1, "export": False, **overrides}
    )
    return config


def logged(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if '"event"' not in line]


@pytest.mark.parametrize("loss", ["sigmoid", "inpo"])
def test_precomputed_equals_on_the_fly_and_is_cached(tmp_path, capsys, loss):
    cache = tmp_path / "cache"
    runs = {}
    for reference in ("on_the_fly", "precomputed", "precomputed"):
        workdir = tmp_path / f"{reference}_{len(runs)}"
        train(tiny(**{"loss.name": loss, "reference": reference, "reference_cache_dir": str(cache)}), str(workdir))
        runs[f"{reference}_{len(runs)}"] = logged(workdir)
    out = capsys.readouterr().out
    on_the_fly, first, second = runs["on_the_fly_0"], runs["precomputed_1"], runs["precomputed_2"]
    for key in ("loss", "grad_norm", "rewards/margins"):
        np.testing.assert_allclose(
            [r[key] for r in first if key in r],
            [r[key] for r in on_the_fly if key in r],
            rtol=1e-4,
            atol=1e-5,
            err_msg=key,
        )
    np.testing.assert_allclose(
        [r["eval/loss"] for r in first if "eval/loss" in r],
        [r["eval/loss"] for r in on_the_fly if "eval/loss" in r],
        rtol=1e-4,
        atol=1e-5,
    )
    assert [r["loss"] for r in second if "loss" in r] == [r["loss"] for r in first if "loss" in r]
    # The first precomputed run computed the train and eval splits; the second read them all back.
    assert "0 cached shards read, 400 examples computed" in out and "0 cached shards read, 80 examples computed" in out
    assert "2 cached shards read, 0 examples computed" in out and "1 cached shards read, 0 examples computed" in out


def test_precomputed_is_refused_where_reference_depends_on_the_batch():
    config = importlib.import_module("configs.kto").get_config("tiny")
    config.reference = "precomputed"
    with pytest.raises(validate.ConfigError, match="precomputed is available for methods"):
        validate.check_config(config)


def test_no_reference_and_no_reference_fields_names_the_field(tmp_path):
    config = tiny(**{"loss.name": "ipo", "reference": "none"})
    with pytest.raises(ValueError, match=r"has no field 'ref_chosen_logps'.*reference=on_the_fly or precomputed"):
        train(config, str(tmp_path))
