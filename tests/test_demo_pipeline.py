"""The CDR -> SimPO pipeline (experiments/cdr_simpo.py) end to end on its tiny preset, and its resume."""

import json
import os

import numpy as np
import pytest

from configs import cdr_simpo as cdr_config
from experiments import cdr_simpo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("cdr"))
    config = cdr_config.get_config("tiny")
    summary = cdr_simpo.pipeline(config, workdir)
    return config, workdir, summary


def test_writes_every_output(demo_run):
    _, workdir, _ = demo_run
    for name in (
        "summary.json",
        "report.md",
        "demo.png",
        "annotate/preferences.jsonl",
        "annotate/summary.json",
        "train/metrics.jsonl",
        "train/export/config.json",
        "eval/before.json",
        "eval/after.json",
    ):
        assert os.path.exists(os.path.join(workdir, name)), name
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    for key in ("verdict", "figures", "judge", "heldout_reward", "stage_seconds", "wall_seconds"):
        assert key in summary
    assert set(summary["stage_seconds"]) >= {"sample_and_annotate", "train", "generate_heldout", "score_heldout"}


def test_pairs_are_best_vs_worst_by_the_training_reward(demo_run):
    _, workdir, _ = demo_run
    scored = [json.loads(line) for line in open(os.path.join(workdir, "annotate/scored.jsonl"))]
    prefs = [json.loads(line) for line in open(os.path.join(workdir, "annotate/preferences.jsonl"))]
    assert prefs, "no preference pairs were written"
    by_id = {str(r["id"]): r for r in scored}
    for pair in prefs:
        record = by_id[str(pair["id"])]
        assert pair["chosen_reward"] == max(record["rewards"])
        assert pair["rejected_reward"] == min(record["rewards"])
        assert pair["chosen"] == record["responses"][record["rewards"].index(max(record["rewards"]))]
        assert pair["chosen_reward"] > pair["rejected_reward"]


def test_paired_difference_matches_the_per_prompt_figures(demo_run):
    _, _, summary = demo_run
    heldout = summary["figures"]["heldout_density_ratio"]
    before, after, diff = heldout["before"][0], heldout["after"][0], heldout["paired_difference"][0]
    np.testing.assert_allclose(after - before, diff, rtol=1e-9, atol=1e-9)
    win, win_se = summary["figures"]["judge_winrate_after_vs_before"]
    assert 0.0 <= win <= 1.0


def test_rerun_resumes_without_redoing_stages(demo_run):
    config, workdir, first = demo_run
    second = cdr_simpo.pipeline(config, workdir)
    # Sampling, training and generation resume from their files: same figures, much less time.
    assert second["figures"] == first["figures"]
    assert second["stage_seconds"]["train"] < first["stage_seconds"]["train"]
