"""MT-Bench: FastChat's parsing rules and its pandas aggregation, on synthetic judgments."""

import math

import numpy as np
import pandas as pd
import pytest

from alignax.evaluate import mt_bench

QUESTIONS = "mt_bench/fastchat/llm_judge/data/mt_bench/question.jsonl"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Explanation... Rating: [[7]]", 7.0),
        ("Rating: [[8.5]] and later [[2]]", 8.5),  # the first match wins
        ("I give it [6] out of 10", 6.0),  # "[x]" fallback
        ("[3] first, then [[9]]", 9.0),  # "[[x]]" takes precedence over "[x]"
        ("Rating: 7/10", mt_bench.UNPARSABLE),
        ("Rating: [[seven]]", mt_bench.UNPARSABLE),
        ("", mt_bench.UNPARSABLE),
    ],
)
def test_parse_rating(text, expected):
    assert mt_bench.parse_rating(text) == expected


def test_parse_pairwise_and_two_scores():
    assert mt_bench.parse_pairwise_verdict("... [[B]]") == "B"
    assert mt_bench.parse_pairwise_verdict("[[C]]") == "tie"
    assert mt_bench.parse_pairwise_verdict("A is better") == "error"
    assert mt_bench.parse_two_ratings("scores [[7, 3.5]]") == (7.0, 3.5)
    assert mt_bench.parse_two_ratings("none") is None


def test_single_scores_match_fastchat_pandas_aggregation(evaldata_dir):
    categories = mt_bench.read_categories(evaldata_dir / QUESTIONS)
    assert len(categories) == 80 and len(set(categories.values())) == 8
    rng = np.random.default_rng(0)
    judgments, table = [], []
    for model in ("m1", "m2"):
        for question_id in categories:
            for turn in (1, 2):
                rating = int(rng.integers(1, 11))
                kind = rng.choice(["double", "single", "bad"], p=[0.8, 0.1, 0.1])
                text = {
                    "double": f"Good. Rating: [[{rating}]]",
                    "single": f"Rating: [{rating}]",
                    "bad": "I cannot rate this.",
                }[kind]
                judgments.append({"model": model, "question_id": question_id, "turn": turn, "judgment": text})
                table.append(
                    {
                        "model": model,
                        "question_id": question_id,
                        "turn": turn,
                        "score": -1 if kind == "bad" else rating,
                        "category": categories[question_id],
                    }
                )
    got = mt_bench.single_scores(judgments, categories=categories)
    # Reference: FastChat show_result.display_result_single, restated with pandas.
    df = pd.DataFrame(table)
    df = df[df["score"] != -1]
    for model in ("m1", "m2"):
        sub = df[df["model"] == model]
        assert got[model]["score"] == pytest.approx(sub["score"].mean(), abs=1e-12)
        assert got[model]["turn_1"] == pytest.approx(sub[sub.turn == 1]["score"].mean(), abs=1e-12)
        assert got[model]["turn_2"] == pytest.approx(sub[sub.turn == 2]["score"].mean(), abs=1e-12)
        by_cat = sub.groupby("category")["score"].mean()
        assert got[model]["categories"] == pytest.approx(by_cat.to_dict(), abs=1e-12)
        n_bad = sum(1 for row in table if row["model"] == model and row["score"] == -1)
        assert n_bad > 0 and got[model]["n_unparsable"] == n_bad
        assert got[model]["n_rows"] == len(sub)


def test_overall_is_row_mean_not_mean_of_turn_means():
    rows = [
        {"model": "m", "question_id": 1, "turn": 1, "score": 10},
        {"model": "m", "question_id": 2, "turn": 1, "score": 4},
        {"model": "m", "question_id": 1, "turn": 2, "score": 1},
        {"model": "m", "question_id": 2, "turn": 2, "score": -1},
    ]
    got = mt_bench.single_scores(rows)["m"]
    assert got["score"] == pytest.approx(5.0)  # (10 + 4 + 1) / 3
    assert got["turn_1"] == 7.0 and got["turn_2"] == 1.0  # mean of turn means would be 4.0
    assert got["n_unparsable"] == 1


def test_bad_input():
    with pytest.raises(ValueError, match="outside"):
        mt_bench.single_scores([{"model": "m", "question_id": 1, "turn": 1, "score": 11}])
    with pytest.raises(ValueError, match="outside"):
        mt_bench.single_scores([{"model": "m", "question_id": 1, "turn": 1, "score": math.nan}])
    with pytest.raises(KeyError, match="turn"):
        mt_bench.single_scores([{"model": "m", "question_id": 1, "score": 5}])
    with pytest.raises(KeyError, match="no category"):
        mt_bench.single_scores([{"model": "m", "question_id": 999, "turn": 1, "score": 5}], categories={})
    only_bad = mt_bench.single_scores([{"model": "m", "question_id": 1, "turn": 1, "judgment": "no"}])
    assert math.isnan(only_bad["m"]["score"]) and only_bad["m"]["n_unparsable"] == 1


def test_pairwise_swapped_games():
    rows = [
        {"model_1": "a", "model_2": "b", "g1_judgment": "[[A]]", "g2_judgment": "[[B]]"},  # a wins twice
        {"model_1": "a", "model_2": "b", "g1_judgment": "[[A]]", "g2_judgment": "[[A]]"},  # disagree -> tie
        {"model_1": "a", "model_2": "b", "g1_judgment": "[[C]]", "g2_judgment": "[[C]]"},  # tie
        {"model_1": "a", "model_2": "b", "g1_judgment": "[[B]]", "g2_judgment": "[[A]]"},  # b wins
        {"model_1": "a", "model_2": "b", "g1_judgment": "??", "g2_judgment": "[[A]]"},  # error, dropped
    ]
    got = mt_bench.pairwise_win_rates(rows)
    assert (got["a"]["win"], got["a"]["loss"], got["a"]["tie"], got["a"]["n_error"]) == (1, 1, 2, 1)
    assert got["a"]["win_rate_adjusted"] == pytest.approx((1 + 1) / 4)
    assert got["b"]["win_rate_adjusted"] == pytest.approx((1 + 1) / 4)


def test_cli_prints_strict_json(tmp_path, capsys):
    import argparse
    import json

    path = tmp_path / "judgments.jsonl"
    path.write_text(json.dumps({"model": "m", "question_id": 81, "turn": 1, "judgment": "Rating: [[8]]"}) + "\n")
    parser = argparse.ArgumentParser()
    mt_bench.add_arguments(parser)
    assert mt_bench.run(parser.parse_args([str(path)])) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert out["score"] == 8.0 and out["turn_2"] is None
