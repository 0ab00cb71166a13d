"""Leaderboard report: the written table carries the computed metrics; the chart is a real PNG."""

import json

import numpy as np
import pandas as pd
import pytest

from alignax.evaluate import alpaca_eval as ae
from alignax.evaluate import report

MODELS = ("gpt4_1106_preview", "claude-2", "gpt-3.5-turbo-1106_verbose", "alpaca-7b", "gpt4_gamed")


@pytest.fixture(scope="module")
def results(evaldata_dir):
    paths = [
        evaldata_dir / "alpaca_eval/results" / m / "weighted_alpaca_eval_gpt4_turbo/annotations.json.gz" for m in MODELS
    ]
    return ae.evaluate_files(paths, df_gamed=evaldata_dir / "alpaca_eval/PROXY_not_published/df_gamed_PROXY.csv")


@pytest.fixture(scope="module")
def written(results, tmp_path_factory):
    return report.write_report(results, tmp_path_factory.mktemp("report"), title="AlpacaEval 2 (proxy LC)")


def test_files_are_written(written):
    for kind in ("markdown", "csv", "chart"):
        assert written[kind].is_file() and written[kind].stat().st_size > 0, kind
    assert written["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(written["chart"])
    assert image.shape[0] > 400 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_csv_numbers_equal_computed_metrics(results, written):
    table = pd.read_csv(written["csv"]).set_index("model")
    assert set(table.index) == set(results)
    for model, metrics in results.items():
        for key, header in report.COLUMNS:
            assert table.loc[model, header] == pytest.approx(metrics[key], rel=1e-12, abs=1e-12), (model, key)
    # Best first by LC win rate.
    lc = pd.read_csv(written["csv"])["LC win rate"].to_numpy()
    assert np.all(np.diff(lc) <= 0)


def test_markdown_numbers_equal_computed_metrics(results, written):
    lines = written["markdown"].read_text().splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[0] == "model" and "LC win rate" in header and "avg length" in header
    rows = {}
    for line in lines[4:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    assert set(rows) == set(results)
    for model, metrics in results.items():
        assert float(rows[model]["LC win rate"]) == pytest.approx(metrics["length_controlled_winrate"], abs=0.005)
        assert float(rows[model]["win rate"]) == pytest.approx(metrics["win_rate"], abs=0.005)
        assert int(rows[model]["avg length"]) == metrics["avg_length"]
        assert int(rows[model]["wins"]) == metrics["n_wins"]


def test_report_cli_from_metrics_json(results, tmp_path):
    from alignax.evaluate import cli

    metrics_path = tmp_path / "metrics.json"
    metrics_path.write_text(json.dumps(results))
    out_dir = tmp_path / "out"
    assert cli.main(["report", "--metrics", str(metrics_path), "--out-dir", str(out_dir)]) == 0
    table = pd.read_csv(out_dir / "leaderboard.csv").set_index("model")
    assert table.loc["claude-2", "win rate"] == pytest.approx(results["claude-2"]["win_rate"])
    assert (out_dir / "winrates.png").is_file()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert cli.main(["report", "--metrics", str(bad), "--out-dir", str(out_dir)]) == 2


def test_raw_only_table_and_empty_input():
    table = report.leaderboard_table(
        {"a": {"win_rate": 10.0, "avg_length": 100}, "b": {"win_rate": 30.0, "avg_length": 300}}
    )
    assert list(table["model"]) == ["b", "a"] and "LC win rate" not in table.columns
    with pytest.raises(ValueError, match="no models"):
        report.leaderboard_table({})


def test_cli_help_lists_every_benchmark(capsys):
    from alignax.evaluate import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in text
    assert "examples:" in text
