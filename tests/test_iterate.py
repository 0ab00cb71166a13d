"""The on-policy loop (alignax/iterate): builders, and SIGKILL inside sample, score and train.

The kill test runs the tiny SPPO config as real processes: once uninterrupted, then a chain where
each run is SIGKILLed inside one stage (after the first chunk of samples of iteration 1, after the
first chunk of judgements of iteration 1, after the first checkpoint of iteration 2's training) and
the next run resumes. The final summary must match the uninterrupted one (1e-6) and every sample
file must hold each prompt exactly once, with the same texts.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from ml_collections import ConfigDict

from alignax import files
from alignax.iterate import build

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _scored(scores, matrix=None):
    k = len(scores)
    if matrix is None:
        s = np.asarray(scores, float)
        matrix = 1 / (1 + np.exp(-(s[:, None] - s[None, :])))
    matrix = np.asarray(matrix, float)
    return {
        "id": "p",
        "prompt": "x",
        "responses": [f"r{i}" for i in range(k)],
        "scores": list(scores),
        "win_matrix": matrix.tolist(),
        "win_probs": matrix.mean(1).tolist(),
    }


OPTIONS = ConfigDict({"margin": 0.1, "seed": 0})


def test_sppo_pairs_carry_win_probs():
    (pair,) = build.build("sppo", [_scored([0.0, 2.0, -1.0, 1.0])], OPTIONS)
    assert (pair["chosen"], pair["rejected"]) == ("r1", "r2")
    record = _scored([0.0, 2.0, -1.0, 1.0])
    assert pair["chosen_win_probs"] == pytest.approx(record["win_probs"][1])
    assert pair["rejected_win_probs"] == pytest.approx(record["win_probs"][2])
    assert build.build("sppo", [_scored([1.0, 1.0, 1.0])], OPTIONS) == []  # all tied: no pair


def test_inpo_knockout_brackets():
    # 3 beats everyone, 0 loses to everyone; the brackets find them.
    s = [-3.0, 0.0, 1.0, 5.0]
    m = np.asarray(_scored(s)["win_matrix"])
    assert build.knockout(m, winners=True) == 3 and build.knockout(m, winners=False) == 0
    (pair,) = build.build("inpo", [_scored(s)], OPTIONS)
    assert (pair["chosen"], pair["rejected"]) == ("r3", "r0")


def test_dno_margin_filter():
    close = _scored([0.0, 0.01, 0.02])
    far = _scored([0.0, 3.0, -3.0])
    assert build.build("dno", [close], OPTIONS) == []
    (pair,) = build.build("dno", [far], OPTIONS)
    assert (pair["chosen"], pair["rejected"]) == ("r1", "r2")


def test_expert_iteration_is_best_of_n_sft():
    (record,) = build.build("expert_iteration", [_scored([0.3, 0.9, 0.1])], OPTIONS)
    assert record["messages"][-1] == {"role": "assistant", "content": "r1"}


# ---------------------------------------------------------------------------------------- SIGKILL

LAUNCHER = r"""
import os, signal, sys
stage, iteration = os.environ["KILL_STAGE"], os.environ["KILL_ITER"]
marker = f"iter_{iteration}" + os.sep + stage
if stage in ("sample", "score"):
    import alignax.files as files
    append = files.append_jsonl
    def killing_append(path, records):
        append(path, records)
        if marker in str(path):
            os.kill(os.getpid(), signal.SIGKILL)
    files.append_jsonl = killing_append
elif stage == "train":
    from alignax.train import checkpoint
    save = checkpoint.Checkpointer.save
    def killing_save(self, step, *args, **kwargs):
        save(self, step, *args, **kwargs)
        self.close()
        if marker in str(self.directory):
            os.kill(os.getpid(), signal.SIGKILL)
    checkpoint.Checkpointer.save = killing_save
import runpy
sys.argv = ["experiments.sppo"] + sys.argv[1:]
runpy.run_module("experiments.sppo", run_name="__main__")
"""


def _run(workdir, kill=None, log_compiles=False):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", PYTHONPATH=REPO)
    if log_compiles:
        env["JAX_LOG_COMPILES"] = "1"
    args = ["--config", os.path.join(REPO, "configs/sppo.py:tiny"), "--workdir", str(workdir)]
    if kill:
        env.update(KILL_STAGE=kill[0], KILL_ITER=str(kill[1]))
        cmd = [sys.executable, "-c", LAUNCHER, *args]
    else:
        cmd = [sys.executable, "-m", "experiments.sppo", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)


def _metrics(workdir):
    with open(os.path.join(workdir, "summary.json")) as f:
        return [(r["iteration"], r["metrics"], r.get("num_records")) for r in json.load(f)["iterations"]]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """The uninterrupted tiny SPPO run (2 iterations), with JAX's compile log."""
    clean = tmp_path_factory.mktemp("iterate") / "clean"
    done = _run(clean, log_compiles=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return clean, done.stderr


def test_sampler_compiles_are_reused_across_iterations(clean_run):
    """Iteration 2 samples and evaluates without compiling the sampler again."""
    _, stderr = clean_run
    first, later = stderr.split("iter 2 sample", 1)
    assert "jit(_prefill)" in first and "jit(_decode)" in first
    assert "jit(_prefill)" not in later and "jit(_decode)" not in later


def test_train_step_compiles_are_reused_across_iterations(clean_run):
    """Iteration 2 trains with iteration 1's jitted train step (alignax/train/loop.py keeps it):
    the step and the state initializer are compiled in iteration 1 and never again (the tiny
    preset pads every row to one length, so a new compile could only come from a new jit)."""
    _, stderr = clean_run
    first, later = stderr.split("iter 2 sample", 1)
    for name in ("jit(train_step)", "jit(init_state)"):
        assert f"Compiling {name}" in first, name
        assert f"Compiling {name}" not in later, name


def test_sigkill_in_each_stage_then_resume(clean_run, tmp_path):
    clean, _ = clean_run
    killed = tmp_path / "killed"
    for stage, iteration in (("sample", 1), ("score", 1), ("train", 2)):
        result = _run(killed, kill=(stage, iteration))
        assert result.returncode == -signal.SIGKILL, (stage, result.returncode, result.stderr[-3000:])
        # Killed inside the stage: some of its output exists, its DONE marker does not.
        directory = killed / f"iter_{iteration}" / stage
        assert directory.is_dir() and not (directory / "DONE.json").exists(), stage
    resumed = _run(killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    for (i, a, na), (j, b, nb) in zip(_metrics(clean), _metrics(killed), strict=True):
        assert (i, na) == (j, nb)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=f"iteration {i} {key}")
    for t in (1, 2):
        for stage, name in (("sample", "samples.jsonl"), ("score", "scored.jsonl"), ("build", "train.jsonl")):
            ours = files.read_jsonl(killed / f"iter_{t}" / stage / name)
            theirs = files.read_jsonl(clean / f"iter_{t}" / stage / name)
            ids = [r["id"] for r in ours]
            assert len(ids) == len(set(ids)) == len(theirs), (t, stage)  # nothing duplicated or missing
            assert sorted(json.dumps(r, sort_keys=True) for r in ours) == sorted(
                json.dumps(r, sort_keys=True) for r in theirs
            ), (t, stage)
    assert (killed / "metric.png").stat().st_size > 0
