"""Run outputs: metrics.jsonl + TensorBoard, the console progress bar, and the curves PNG."""

from __future__ import annotations

import json
import os
import time

import tqdm


class MetricsWriter:
    """Appends one JSON object per logged step to DIR/metrics.jsonl and mirrors it to TensorBoard.

    The file is only ever appended to: a run (or a resumed one) first appends a marker
    `{"event": "resume", "step": s}`, and `read_metrics` replays the log, dropping the records of
    steps after s that a killed run had logged. So nothing a previous run wrote is lost, and the
    replayed metrics of a killed-and-resumed run equal an uninterrupted run's, step by step."""

    def __init__(self, workdir: str, *, resume_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if not enabled:
            return
        existed = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        self._file = open(self.path, "a")
        if existed:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write("\n")  # a line cut by a kill stays, unparsed, on its own line
            self._file.write(json.dumps({"event": "resume", "step": int(resume_step), "time": time.time()}) + "\n")
            self._file.flush()
        try:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(
                os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1 if resume_step else None
            )
        except ImportError:  # TensorBoard output is optional; metrics.jsonl is the record
            self._tb = None

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, float(value), int(step))

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
    """The step records of DIR/metrics.jsonl as the run's final history: a resume marker at step s
    drops the records after s logged before it; lines cut by a kill are skipped."""
    path = os.path.join(workdir, "metrics.jsonl")
    records: list[dict] = []
    if not os.path.exists(path):
        return records
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict) or "step" not in record:
                continue
            if record.get("event") == "resume":
                records = [r for r in records if r["step"] <= record["step"]]
            else:
                records.append(record)
    return records


class Progress:
    """A tqdm bar with loss, tokens/s and ETA (tqdm computes the ETA from the step rate)."""

    def __init__(self, *, total: int, initial: int, enabled: bool = True):
        self.enabled = enabled
        self._bar = tqdm.tqdm(
            total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True
        )
        self._last_time = time.time()
        self._last_step = initial

    def update(self, step: int, metrics: dict) -> None:
        now = time.time()
        elapsed = max(now - self._last_time, 1e-9)
        tokens_per_s = metrics.get("num_tokens", 0.0) * (step - self._last_step) / elapsed
        self._bar.update(step - self._bar.n)
        shown = {"loss": f"{metrics.get('loss', float('nan')):.4f}", "tok/s": f"{tokens_per_s:.0f}"}
        for key in ("rewards/accuracies", "rewards/margins"):
            if key in metrics:
                shown[key.split("/")[-1]] = f"{metrics[key]:.3f}"
        self._bar.set_postfix(shown)
        self._last_time, self._last_step = now, step

    def note(self, metrics: dict) -> None:
        if self.enabled:
            self._bar.write(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    def close(self) -> None:
        self._bar.close()


CURVES = ("loss", "rewards/margins", "rewards/accuracies", "eval/loss", "eval/rewards/accuracies")


def plot_curves(workdir: str, keys=CURVES) -> str | None:
    """DIR/curves.png: one panel per metric present in metrics.jsonl."""
    records = read_metrics(workdir)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list] = {}
    for record in records:
        for key in keys:
            if key in record:
                series.setdefault(key, []).append((record["step"], record[key]))
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3.2), squeeze=False)
    for axis, (key, points) in zip(axes[0], series.items()):
        steps, values = zip(*points)
        axis.plot(steps, values, marker="." if len(steps) < 50 else None)
        axis.set_title(key)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    fig.tight_layout()
    out = os.path.join(workdir, "curves.png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
