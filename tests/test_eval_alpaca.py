"""AlpacaEval 2 metrics against the published leaderboard CSV and the alpaca-eval package itself."""

import logging
import warnings
from unittest import mock

import numpy as np
import pandas as pd
import pytest

from alignax.evaluate import alpaca_eval as ae

ALPACA = "alpaca_eval"
LEADERBOARD_CSV = (
    "alpaca_eval/src/alpaca_eval/leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"
)
PROXY_DF_GAMED = "alpaca_eval/PROXY_not_published/df_gamed_PROXY.csv"


@pytest.fixture(scope="module")
def annotations(evaldata_dir):
    """{leaderboard model name (the results folder): annotations frame} for every saved model."""
    paths = sorted((evaldata_dir / ALPACA / "results").glob("*/weighted_alpaca_eval_gpt4_turbo/annotations.json.gz"))
    assert len(paths) == 18, paths
    return {p.parents[1].name: ae.load_annotations(p) for p in paths}


@pytest.fixture(scope="module")
def leaderboard(evaldata_dir):
    csv = pd.read_csv(evaldata_dir / LEADERBOARD_CSV, index_col=0)
    return csv[~csv.index.duplicated()]  # NullModel is listed twice, with identical rows


@pytest.fixture(scope="module")
def proxy_df_gamed_path(evaldata_dir):
    return evaldata_dir / PROXY_DF_GAMED


@pytest.fixture(scope="module")
def package_glm():
    """alpaca-eval's own glm_winrate module (the reference implementation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources deprecation inside alpaca_eval
        from alpaca_eval.metrics import glm_winrate
    return glm_winrate


def package_lc(package_glm, df, df_gamed_path, glm_name="length_controlled_v1"):
    # Offline: the package downloads df_gamed.csv from the HF hub; point it at the local table.
    with (
        mock.patch.object(package_glm, "hf_hub_download", lambda **kwargs: str(df_gamed_path)),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        return package_glm.get_length_controlled_winrate(
            df.copy(), glm_name=glm_name, save_weights_dir=None, is_warn_extreme_changes=False
        )


@pytest.fixture(scope="module")
def our_lc(annotations, proxy_df_gamed_path):
    gamed = ae.load_df_gamed(proxy_df_gamed_path)
    return {m: ae.length_controlled_winrate(df, gamed, warn_extreme_changes=False) for m, df in annotations.items()}


# ------------------------------------------------------------------------------------------------
# Raw metrics = the leaderboard CSV.


def test_raw_metrics_equal_leaderboard_csv(annotations, leaderboard):
    for model, df in annotations.items():
        ours = ae.winrate_metrics(df)
        row = leaderboard.loc[model]
        for key in ae.RAW_METRIC_KEYS:
            assert ours[key] == pytest.approx(row[key], abs=1e-6), (model, key)


def test_avg_length_equals_leaderboard_csv(annotations, leaderboard):
    checked = 0
    for model, df in annotations.items():
        # The leaderboard averages over model_outputs.json (805 outputs); annotation files with missing
        # rows (alpaca-7b_concise/verbose) do not carry all of them.
        if len(df) != 805:
            continue
        assert ae.average_length(df) == leaderboard.loc[model, "avg_length"], model
        checked += 1
    assert checked == 16


def test_raw_metrics_equal_package_on_edge_cases(package_glm):
    from alpaca_eval.metrics.winrate import get_winrate

    prefs = [1.0, 2.0, 1.5, 0.0, np.nan, 1.2, 1.8, 1.4999, 1.5001, 2.0, 1.0, np.nan]
    ours = ae.winrate_metrics(pd.DataFrame({"preference": prefs}))
    ref = get_winrate(pd.DataFrame({"preference": prefs}))
    for key in ae.RAW_METRIC_KEYS:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
    assert ours["n_total"] == 10 and ours["n_draws"] == 2


# ------------------------------------------------------------------------------------------------
# Length-controlled win rate = the alpaca-eval package, and close to the published LC.


def test_lc_equals_package_for_every_model(annotations, our_lc, proxy_df_gamed_path, package_glm):
    for model, df in annotations.items():
        ref = package_lc(package_glm, df, proxy_df_gamed_path)
        assert set(our_lc[model]) == set(ref), model
        for key in ref:
            assert our_lc[model][key] == pytest.approx(ref[key], abs=1e-2), (model, key)


def test_lc_close_to_published(our_lc, leaderboard):
    for model, ours in our_lc.items():
        published = leaderboard.loc[model, "length_controlled_winrate"]
        assert abs(ours["length_controlled_winrate"] - published) < 1.5, (model, ours, published)
    assert our_lc["gpt4_1106_preview"]["length_controlled_winrate"] == 50.0


def test_lc_noreg_and_minimal_equal_package(annotations, proxy_df_gamed_path, package_glm):
    df = annotations["claude-2"]
    for glm_name in ("length_controlled_noreg", "length_controlled_minimal"):
        ours = ae.length_controlled_winrate(df, proxy_df_gamed_path, glm_name=glm_name, warn_extreme_changes=False)
        ref = package_lc(package_glm, df, proxy_df_gamed_path, glm_name=glm_name)
        assert ours["length_controlled_winrate"] == pytest.approx(ref["length_controlled_winrate"], abs=1e-2)
    # The regularisation towards the gamed baselines matters for short-output models (EVALUATION.md 1.6).
    reg = ae.length_controlled_winrate(df, proxy_df_gamed_path, warn_extreme_changes=False)
    noreg = ae.length_controlled_winrate(
        df, proxy_df_gamed_path, glm_name="length_controlled_noreg", warn_extreme_changes=False
    )
    assert reg["length_controlled_winrate"] - noreg["length_controlled_winrate"] > 2


def test_lc_with_nan_preferences_equals_package(annotations, proxy_df_gamed_path, package_glm):
    df = annotations["gemma-7b-it"].copy()
    df.loc[[3, 50, 400], "preference"] = np.nan
    ours = ae.length_controlled_winrate(df, proxy_df_gamed_path, warn_extreme_changes=False)
    ref = package_lc(package_glm, df, proxy_df_gamed_path)
    assert ours["n_total"] == 802
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-2), key


def test_alignment_by_instruction_text(annotations, proxy_df_gamed_path):
    """Shuffled rows aligned to the eval set give the in-order result; a foreign instruction is an error."""
    eval_set = list(annotations["gpt4_1106_preview"]["instruction"])
    df = annotations["OpenHermes-2.5-Mistral-7B"]
    in_order = ae.length_controlled_winrate(df, proxy_df_gamed_path, warn_extreme_changes=False)
    shuffled = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    aligned = ae.length_controlled_winrate(
        shuffled, proxy_df_gamed_path, eval_instructions=eval_set, warn_extreme_changes=False
    )
    assert aligned["length_controlled_winrate"] == pytest.approx(in_order["length_controlled_winrate"], abs=1e-9)
    foreign = df.copy()
    foreign.loc[7, "instruction"] = "An instruction that is not in AlpacaEval"
    with pytest.raises(ValueError, match="not in the evaluation set.*An instruction that is not"):
        ae.length_controlled_winrate(foreign, proxy_df_gamed_path, eval_instructions=eval_set)


# ------------------------------------------------------------------------------------------------
# Bad input.


def test_bad_input_errors_name_the_problem(annotations, proxy_df_gamed_path):
    df = annotations["alpaca-7b"]
    with pytest.raises(ValueError, match=r"missing field\(s\) \['output_1'\]"):
        ae.length_controlled_winrate(df.drop(columns=["output_1"]), proxy_df_gamed_path)
    with pytest.raises(ValueError, match=r"missing field\(s\) \['preference'\]"):
        ae.winrate_metrics(df.drop(columns=["preference"]))
    bad = df.copy()
    bad.loc[12, "preference"] = 3.0
    with pytest.raises(ValueError, match="row 12 \\(instruction"):
        ae.winrate_metrics(bad)
    bad = df.copy()
    bad["preference"] = bad["preference"].astype(object)
    bad.loc[5, "preference"] = "model_2"
    with pytest.raises(ValueError, match="not a number at row 5"):
        ae.winrate_metrics(bad)
    two_models = pd.concat([df.iloc[:10], annotations["claude-2"].iloc[10:20]])
    with pytest.raises(ValueError, match="generator_2.*exactly one model"):
        ae.length_controlled_winrate(two_models, proxy_df_gamed_path)
    shifted = df.copy()
    shifted.index = shifted.index + 1000  # instruction indices the difficulty table does not have
    with pytest.raises(ValueError, match="instruction index 1000 .*no instruction_difficulty"):
        ae.length_controlled_winrate(shifted, proxy_df_gamed_path)
    with pytest.raises(ValueError, match="needs the instruction-difficulty"):
        ae.length_controlled_winrate(df, None)
    gamed = pd.read_csv(proxy_df_gamed_path).drop(columns=["std_delta_len"])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['std_delta_len'\]"):
        ae.length_controlled_winrate(df, gamed)


def test_nan_preferences_are_counted_skips(annotations, caplog):
    df = annotations["claude-2"].copy()
    df.loc[[0, 1], "preference"] = np.nan
    with caplog.at_level(logging.WARNING):
        metrics = ae.winrate_metrics(df)
    assert metrics["n_total"] == 803
    assert "2 annotation(s) without a preference are skipped" in caplog.text
    with pytest.raises(ValueError, match="no annotation has a preference"):
        ae.winrate_metrics(pd.DataFrame({"preference": [np.nan, np.nan]}))


def test_cli_writes_metrics(evaldata_dir, proxy_df_gamed_path, tmp_path, leaderboard):
    import json

    from alignax.evaluate import cli

    paths = [
        str(evaldata_dir / ALPACA / "results" / m / "weighted_alpaca_eval_gpt4_turbo/annotations.json.gz")
        for m in ("claude-2", "alpaca-7b")
    ]
    out = tmp_path / "metrics.json"
    assert cli.main(["alpaca_eval", *paths, "--df-gamed", str(proxy_df_gamed_path), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["claude-2"]["win_rate"] == pytest.approx(leaderboard.loc["claude-2", "win_rate"], abs=1e-6)
    assert metrics["alpaca-7b"]["avg_length"] == leaderboard.loc["alpaca-7b", "avg_length"]
    assert (
        abs(metrics["claude-2"]["length_controlled_winrate"] - leaderboard.loc["claude-2", "length_controlled_winrate"])
        < 1.5
    )
