"""DPO on the real SmolLM2-135M-Instruct, from the command line, moves held-out reward accuracy above chance.

The data are the built-in arithmetic pairs (alignax/data/builtin/make_builtin.py): chosen is the
right answer, rejected the same wording with a wrong number, so only correctness separates them.
Held-out: all 80 pairs of builtin:arith_pairs/eval. Before training every implicit reward margin is
0 (policy = reference), so accuracy (chosen reward > rejected reward) starts at 0; a direction-blind
learner would sit near 0.5. The test asks for at least MIN_ACCURACY = 0.6, a margin of 0.1 over
chance (1.8 binomial standard deviations at n = 80). Measured on 2026-11-30: 0.625 (50/80) after
24 steps. This is the figure docs/reproductions.md quotes for DPO at CPU scale.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = 24
MIN_ACCURACY = 0.6


@pytest.mark.slow
def test_dpo_on_smollm2_lifts_heldout_reward_accuracy(tmp_path):
    workdir = tmp_path / "dpo"
    command = [
        sys.executable,
        "-m",
        "experiments.dpo",
        "--config",
        "configs/dpo.py:cpu",
        "--workdir",
        str(workdir),
        f"--config.total_steps={STEPS}",
        "--config.reference=precomputed",
        "--config.eval_batches=10",
        f"--config.reference_cache_dir={tmp_path / 'refcache'}",
        "--config.export=False",
        f"--config.checkpoint_every={STEPS}",
    ]
    # One CPU device: the test session's 8 fake devices (XLA_FLAGS from conftest) would replicate the
    # 135M model and its optimizer state 8 times.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    accuracy = summary["eval"]["eval/rewards/accuracies"]
    print(f"held-out reward accuracy after {STEPS} DPO steps: {accuracy:.3f} (80 pairs)")
    assert accuracy >= MIN_ACCURACY, summary["eval"]
