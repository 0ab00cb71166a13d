"""Run directories and the command line: a run never destroys what a previous run wrote.

A changed resume is reported key by key; a resume whose checkpoint does not fit refuses (naming the
key) without touching config.json, metrics.jsonl or export/; metrics.jsonl is only appended to;
Ctrl-C keeps the last checkpoint and prints the command to resume; `--help` lists presets, keys and
losses; normal exits print no tracebacks.
"""

import importlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from alignax.train import checkpoint as ckpt_lib
from alignax.train import metrics as metrics_lib
from alignax.train import rundir
from alignax.train.loop import train

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = {"total_steps": 2, "checkpoint_every": 1, "eval_batches": 0, "data.length_multiple": 64}


def tiny_dpo(**overrides):
    config = importlib.import_module("configs.dpo").get_config("tiny")
    config.update_from_flattened_dict({**TINY, **overrides})
    return config


def snapshot(workdir: pathlib.Path) -> dict:
    """Bytes of the files a failed run must not touch."""
    names = ["config.json", "metrics.jsonl", "export/model.safetensors", "export/config.json"]
    return {name: (workdir / name).read_bytes() for name in names}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished")
    train(tiny_dpo(), str(workdir))
    return workdir


def test_read_metrics_replays_resumes_and_skips_torn_lines(tmp_path):
    lines = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}, {"step": 3, "loss": 3.0}]
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"step": 4, "lo'  # killed mid-line
    (tmp_path / "metrics.jsonl").write_text(text)
    writer = metrics_lib.MetricsWriter(str(tmp_path), resume_step=2)
    writer.write(3, {"loss": 30.0})
    writer.close()
    raw = (tmp_path / "metrics.jsonl").read_text()
    assert raw.startswith(text)  # appended, never truncated
    assert [(r["step"], r["loss"]) for r in metrics_lib.read_metrics(str(tmp_path))] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_config_changes_are_listed_and_the_previous_config_kept(tmp_path):
    assert rundir.record_config(str(tmp_path), json.dumps({"a": 1, "b": {"c": 2}})) == []
    changes = rundir.record_config(str(tmp_path), json.dumps({"a": 1, "b": {"c": 3}, "d": 4}))
    assert changes == ["b.c: 2 -> 3", "d: '<absent>' -> 4"]
    assert json.loads((tmp_path / "config_history" / "config.0.json").read_text()) == {"a": 1, "b": {"c": 2}}
    assert json.loads((tmp_path / "config.json").read_text())["b"]["c"] == 3


def test_resume_that_does_not_fit_refuses_and_touches_nothing(finished_run):
    before = snapshot(finished_run)
    config = tiny_dpo(total_steps=3, **{"random_init.hidden_size": 32})
    with pytest.raises(
        ckpt_lib.CheckpointMismatchError, match=r"does not fit the current config: 'params\..*the checkpoint has shape"
    ):
        train(config, str(finished_run))
    assert snapshot(finished_run) == before
    assert sorted(os.listdir(finished_run / "checkpoints"), key=int) == ["1", "2"]


def test_resume_with_a_changed_learning_rate_says_so_and_keeps_the_old_export(finished_run, capsys):
    before = snapshot(finished_run)
    train(tiny_dpo(total_steps=3, **{"optimizer.learning_rate": 2e-3}), str(finished_run))
    out = capsys.readouterr().out
    assert "Resuming with a changed config" in out and "optimizer.learning_rate: 0.001 -> 0.002" in out
    assert "total_steps: 2 -> 3" in out
    assert (finished_run / "config_history" / "config.0.json").read_bytes() == before["config.json"]
    assert (finished_run / "metrics.jsonl").read_bytes().startswith(before["metrics.jsonl"])
    assert [r["step"] for r in metrics_lib.read_metrics(str(finished_run))] == [1, 2, 3]
    kept = [p for p in finished_run.iterdir() if p.name.startswith("export.previous-")]
    assert len(kept) == 1 and (kept[0] / "model.safetensors").read_bytes() == before["export/model.safetensors"]
    assert (finished_run / "export" / "model.safetensors").read_bytes() != before["export/model.safetensors"]


def cli(*args, workdir, **popen):
    command = [
        sys.executable,
        "-m",
        "experiments.dpo",
        "--config",
        "configs/dpo.py:tiny",
        "--workdir",
        str(workdir),
        *args,
    ]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.slow
def test_ctrl_c_keeps_the_checkpoint_and_prints_the_resume_command(tmp_path):
    workdir = tmp_path / "run"
    proc = cli(
        "--config.total_steps=400",
        "--config.checkpoint_every=1",
        "--config.eval_batches=0",
        "--config.async_checkpointing=True",
        workdir=workdir,
    )
    deadline = time.time() + 300
    while not (workdir / "checkpoints" / "2").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Resume with:" in err, err[-2000:]
    assert "experiments.dpo --config configs/dpo.py:tiny --workdir" in err
    assert any(p.name.isdigit() for p in (workdir / "checkpoints").iterdir())


@pytest.mark.slow
def test_normal_exit_prints_a_summary_and_no_traceback(tmp_path):
    proc = cli(
        "--config.total_steps=2",
        "--config.eval_batches=1",
        "--config.async_checkpointing=True",
        workdir=tmp_path / "run",
    )
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "Event loop is closed" not in err, err[-3000:]
    assert "Run summary: 2 steps" in out and "eval/loss" in out and "export" in out


def test_bad_data_is_one_message_with_the_rerun_command(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    proc = cli(f"--config.data.train={empty}", workdir=tmp_path / "run")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-2000:]
    assert "Traceback" not in err and "empty.jsonl" in err and "rerun" in err


def test_help_lists_presets_keys_and_losses():
    result = subprocess.run(
        [sys.executable, "-m", "experiments.dpo", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for expected in (
        "Presets of configs/dpo.py: cpu, llama3_8b, mistral7b, tiny",
        "--config.total_steps=",
        "optimizer steps",
        "sppo ",
        "ln_dpo",
        "beta=10.0",
        "--config.loss.hparams.beta=None",
    ):
        assert expected in result.stdout, expected


def test_first_ctrl_c_is_deferred_to_the_loop_and_a_second_one_stops_at_once():
    from alignax.train import interrupt

    before = signal.getsignal(signal.SIGINT)
    with interrupt.deferred_sigint() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # the handler runs between bytecodes of the main thread
        assert stop.requested  # ... and no KeyboardInterrupt was raised
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)
    assert signal.getsignal(signal.SIGINT) is before
