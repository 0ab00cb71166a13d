"""Resume (issue 5): a run killed with SIGKILL mid-training and restarted with the same workdir
writes the same metrics.jsonl, step by step to 1e-6, as an uninterrupted run; a corrupt or partial
last checkpoint falls back to the previous one with a warning."""

import importlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from alignax.train import metrics as metrics_lib
from alignax.train.loop import train

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = 8
OVERRIDES = {
    "total_steps": STEPS,
    "checkpoint_every": 2,
    "keep_checkpoints": 2,
    "export": False,
    "data.eval": "",
    "data.length_multiple": 64,
}


def tiny_config():
    config = importlib.import_module("configs.dpo").get_config("tiny")
    config.update_from_flattened_dict(OVERRIDES)
    return config


def read_metrics(workdir) -> list[dict]:
    return metrics_lib.read_metrics(str(workdir))


def assert_same_metrics(actual: list[dict], expected: list[dict]) -> None:
    assert [r["step"] for r in actual] == [r["step"] for r in expected] == list(range(1, STEPS + 1))
    for got, want in zip(actual, expected):
        assert got.keys() == want.keys()
        keys = sorted(want)
        np.testing.assert_allclose(
            [got[k] for k in keys], [want[k] for k in keys], rtol=0, atol=1e-6, err_msg=f"step {want['step']}"
        )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    train(tiny_config(), str(workdir))
    return workdir


@pytest.mark.slow
def test_sigkill_then_resume_writes_the_same_metrics(uninterrupted, tmp_path, capsys):
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "experiments.dpo",
        "--config",
        "configs/dpo.py:tiny",
        "--workdir",
        str(workdir),
        *[f"--config.{k}={v}" for k, v in OVERRIDES.items()],
    ]
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    first_checkpoint = workdir / "checkpoints" / "2"
    deadline = time.time() + 300
    try:
        while not first_checkpoint.is_dir() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, (
            "the run ended before it could be killed: " + (tmp_path / "killed.log").read_text()[-2000:]
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(read_metrics(workdir)) < STEPS  # it really was mid-training

    train(tiny_config(), str(workdir))
    out = capsys.readouterr().out
    assert "Resumed from" in out, out[-2000:]
    assert_same_metrics(read_metrics(workdir), read_metrics(uninterrupted))


def _corrupt(checkpoint: pathlib.Path, how: str) -> None:
    if how == "truncate":  # every file of the saved state cut to half its size
        for path in (checkpoint / "state").rglob("*"):
            if path.is_file():
                with open(path, "r+b") as f:
                    f.truncate(path.stat().st_size // 2)
    else:  # the array data of the saved state is missing (a partial copy)
        for path in (checkpoint / "state").rglob("d"):
            shutil.rmtree(path)


@pytest.mark.parametrize("how", ["truncate", "delete"])
def test_corrupt_last_checkpoint_falls_back_to_the_previous_one(uninterrupted, tmp_path, capsys, how):
    workdir = tmp_path / "run"
    shutil.copytree(uninterrupted, workdir)
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == [str(STEPS - 2), str(STEPS)]
    _corrupt(workdir / "checkpoints" / str(STEPS), how)

    train(tiny_config(), str(workdir))
    out = capsys.readouterr().out
    assert f"WARNING: checkpoint step {STEPS} in" in out and "falling back" in out, out[-2000:]
    assert f"Resumed from {workdir / 'checkpoints'}/{STEPS - 2}" in out
    assert_same_metrics(read_metrics(workdir), read_metrics(uninterrupted))
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == [str(STEPS - 2), str(STEPS)]
