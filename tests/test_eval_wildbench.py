"""WildBench: WB-Score and WB-Reward against the published leaderboard tables (evaldata/wildbench)."""

import json

import pytest

from alignax.evaluate import wildbench

SCORE_DIR = "wildbench/eval_results/v2.0625/score.v2/eval=gpt-4o-2024-05-13"
DATA_DIR = "wildbench/leaderboard/data_dir"
PAIRWISE_K = (-1, 500, 1000, 1500)


@pytest.fixture(scope="module")
def tables(evaldata_dir):
    root = evaldata_dir / DATA_DIR
    return {
        "score": json.loads((root / "score.json").read_text()),
        "pairwise": {
            (ref, k): json.loads((root / f"pairwise-{ref}-K={k}.json").read_text())
            for ref in ("gpt4t", "haiku", "llama")
            for k in PAIRWISE_K
        },
        "all_stat": {k: json.loads((root / f"all_stat_wildbench.{k}.json").read_text()) for k in PAIRWISE_K},
    }


def test_wb_score_overall_and_length_equal_score_json(evaldata_dir, tables):
    files = sorted((evaldata_dir / SCORE_DIR).glob("*.json.gz"))
    assert len(files) == 8
    checked = []
    for path in files:
        name = path.name[: -len(".json.gz")]
        if name not in tables["score"]:
            assert "128" in name  # upstream skips file names containing 128/256/...
            continue
        row = wildbench.wb_score(wildbench.read_json(path))
        published = tables["score"][name]
        assert row["total"] == published["total"]
        assert row["score"] == pytest.approx(published["score"], abs=1e-12)
        assert row["adjusted_score"] == pytest.approx(published["adjusted_score"], abs=1e-12)
        assert row["avg_len"] == pytest.approx(published["avg_len"], abs=1e-9)
        assert row["adjusted_score"] * 10 == pytest.approx(tables["all_stat"][-1][name]["WB_score"], abs=1e-9)
        checked.append(name)
    assert len(checked) == 7


def test_reward_aggregation_reproduces_pairwise_tables(tables):
    n_rows = 0
    for (ref, k), table in tables["pairwise"].items():
        for model, row in table.items():
            counts = {o: row[o] for o in wildbench.OUTCOMES}
            got = wildbench.aggregate_pairwise_counts(
                counts=counts, total=row["total"], task_counts=row["task_categorized_results"]
            )
            where = f"{ref} K={k} {model}"
            # Exact: same formula and summation order as the leaderboard's own code.
            assert got["reward"] == row["reward"], where
            assert got["task_macro_reward"] == pytest.approx(row["task_macro_reward"], abs=1e-15), where
            for group, value in row["task_categorized_rewards"].items():
                assert got["task_categorized_rewards"][group] == value, (where, group)
            n_rows += 1
    assert n_rows > 400


def test_mixture_reproduces_all_stat(tables):
    n = 0
    for k in PAIRWISE_K:
        for model, published in tables["all_stat"][k].items():
            rows = {ref: tables["pairwise"][(ref, k)].get(model) for ref in ("haiku", "llama", "gpt4t")}
            if all(r is None for r in rows.values()):
                continue  # score-only models (the leaderboard fills 0 for all three)
            if any(r is None and wildbench.REFERENCES[s] != model for s, r in rows.items()):
                with pytest.raises(KeyError, match="no row"):
                    wildbench.mixture_of_rewards(rows, model=model, k=k)
                continue
            stat = wildbench.mixture_of_rewards(rows, model=model, k=k)
            for key, value in stat.items():
                assert value == pytest.approx(published[key], abs=1e-9), (k, model, key)
            # RewardScore_Avg joins the score table and the reward mixture.
            macro_score = tables["score"][model]["adjusted_task_macro_score"] * 10
            assert (macro_score + stat[f"task_macro_reward.K={k}"]) / 2 == pytest.approx(
                published["RewardScore_Avg"], abs=1e-9
            )
            n += 1
    assert n > 100


def test_k_only_moves_slight_outcomes_to_tie(tables):
    for ref in ("gpt4t", "haiku", "llama"):
        for model, off in tables["pairwise"][(ref, -1)].items():
            for k in (500, 1000, 1500):
                on = tables["pairwise"][(ref, k)][model]
                assert on["win_much"] == off["win_much"] and on["lose_much"] == off["lose_much"]
                assert on["win"] <= off["win"] and on["lose"] <= off["lose"]
                assert on["tie"] - off["tie"] == (off["win"] - on["win"]) + (off["lose"] - on["lose"])


def _item(winner, extent, test_text, ref_text, sid="s"):
    return {"session_id": sid, "winner": winner, "extent": extent, "model_outputs": {"T": test_text, "R": ref_text}}


def test_length_penalty_rules_hand_computed():
    items = [
        _item("T", 1, "x" * 700, "x" * 100, "a"),  # slight win, 600 longer: tie at K=500, win at K=1000
        _item("T", 2, "x" * 900, "x" * 100, "b"),  # much better: never changed
        _item("R", 1, "x" * 100, "x" * 650, "c"),  # slight loss, ref 550 longer: tie at K=500
        _item("tie", 0, "x", "x", "d"),
        _item("R", 2, "x" * 10 + wildbench.TRUNCATED_SUFFIX, "y", "e"),  # skipped, still in total
    ]
    groups = {
        "a": ["Coding & Debugging"],
        "b": ["Coding & Debugging", "Creative Tasks"],
        "c": ["Creative Tasks"],
        "d": ["Creative Tasks"],
        "e": ["Creative Tasks"],
    }
    k500 = wildbench.wb_reward(items, test_model="T", ref_model="R", length_penalty_k=500, task_groups=groups)
    assert (k500["win_much"], k500["win"], k500["tie"], k500["lose"], k500["lose_much"]) == (1, 0, 3, 0, 0)
    assert k500["total"] == 5 and k500["reward"] == pytest.approx(1 / 5)
    off = wildbench.wb_reward(items, test_model="T", ref_model="R", length_penalty_k=-1, task_groups=groups)
    assert off["reward"] == pytest.approx((1 + 0.5 - 0.5) / 5)
    # Coding: {a: win, b: win_much} -> 0.75; Creative: {b: +1, c: -0.5, d: 0} -> 1/6.
    assert off["task_categorized_rewards"]["Coding & Debugging"] == pytest.approx(0.75)
    assert off["task_categorized_rewards"]["Creative Tasks"] == pytest.approx(0.5 / 3)
    assert off["task_macro_reward"] == pytest.approx((0.75 * 1.25 + 0.5 / 3 * 0.5) / 4.75)
    assert off["avg_len"] == pytest.approx((700 + 900 + 100 + 1) / 4)


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match="neither"):
        wildbench.wb_reward([_item("X", 1, "a", "b")], test_model="T", ref_model="R")
    with pytest.raises(KeyError, match="winner"):
        wildbench.wb_reward([{"session_id": "s", "extent": 1, "model_outputs": {}}], test_model="T", ref_model="R")
    with pytest.raises(ValueError, match="unparsable"):
        wildbench.wb_score([{"session_id": "s1", "score": "N/A", "model_output": "x"}])
    with pytest.raises(ValueError, match="outside"):
        wildbench.wb_score([{"session_id": "s1", "score": "nan", "model_output": "x"}])
    with pytest.raises(KeyError, match="no task tags"):
        wildbench.wb_score([{"session_id": "s1", "score": "5", "model_output": "x"}], task_groups={})
    with pytest.raises(ValueError, match="unknown WildBench tag"):
        wildbench.task_groups_of("Poetry", [])


def test_wb_score_task_macro_hand_computed():
    items = [
        {"session_id": "a", "score": "8", "model_output": "abc"},
        {"session_id": "b", "score": "4", "model_output": "abcde"},
        {"session_id": "c", "score": "2", "model_output": "x" + wildbench.TRUNCATED_SUFFIX},
    ]
    groups = {
        "a": wildbench.task_groups_of("Math", ["Coding & Debugging"]),
        "b": wildbench.task_groups_of("Data Analysis", ["Others"]),
        "c": ["Creative Tasks"],
    }
    row = wildbench.wb_score(items, task_groups=groups)
    assert row["adjusted_score"] == pytest.approx((14 / 3 - 5) * 2)  # truncated item counts here
    assert row["avg_len"] == 4  # but not here
    math_group = (6 - 5) * 2
    assert row["task_categorized_scores"] == pytest.approx(
        {"Math & Data Analysis": math_group, "Coding & Debugging": 6.0, "Creative Tasks": -2.0}
    )
    assert row["task_macro_score"] == pytest.approx((2 * 1.0 + 6 * 1.25 - 2 * 0.5) / 4.75)
