"""Arena-Hard-Auto: Bradley-Terry, bootstrap CIs and style control against independent references."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from alignax.evaluate import arena_hard as ah
from alignax.evaluate import arena_hard_v2 as ah2

BATTLES = "arena_hard/DEV_battles_commit57a9881_not_leaderboard.jsonl"
BASELINE = "claude-3-haiku-20240307"


@pytest.fixture(scope="module")
def battles(evaldata_dir):
    return ah.load_battles(evaldata_dir / BATTLES)


@pytest.fixture(scope="module")
def boards(battles):
    return {seed: ah.leaderboard(battles, baseline=BASELINE, num_rounds=100, seed=seed) for seed in (0, 1)}


def test_single_baseline_score_equals_weighted_empirical_win_rate(battles):
    ratings = ah.bt_ratings(battles, baseline=BASELINE)
    assert ratings[BASELINE] == pytest.approx(1000.0)
    scores = ah.win_rate_vs_baseline(ratings, BASELINE)
    # Independent count: (wins + ties / 2) / n of each model over its (weight-expanded) battle rows.
    for model, group in battles.groupby("model_b"):
        empirical = 100 * ((group["winner"] == "model_b").sum() + 0.5 * (group["winner"] == "tie").sum()) / len(group)
        assert scores[model] == pytest.approx(empirical, abs=1e-4), model
    assert scores["claude-3-5-sonnet-20240620"] == pytest.approx(90.8696, abs=1e-4)  # EVALUATION.md 3.1


def test_bootstrap_is_seeded_and_stable_across_seeds(battles, boards):
    again = ah.leaderboard(battles, baseline=BASELINE, num_rounds=100, seed=0)
    pd.testing.assert_frame_equal(again, boards[0])
    a, b = (boards[s].set_index("model").drop(index=BASELINE) for s in (0, 1))
    assert np.allclose(a["score"], b["score"])  # the point estimate does not depend on the seed
    width_a, width_b = a["upper"] - a["lower"], b["upper"] - b["lower"]
    assert ((width_a / width_b).between(0.75, 1.33)).all(), (width_a, width_b)
    mid_a, mid_b = (a["upper"] + a["lower"]) / 2, (b["upper"] + b["lower"]) / 2
    assert (abs(mid_a - mid_b) < 1.0).all(), (mid_a, mid_b)
    assert ((a["lower"] < a["score"]) & (a["score"] < a["upper"])).all()
    # A 95% interval of a win rate near 90% from ~450 battles is a few points wide, not 0 or 20.
    assert ((width_a > 2) & (width_a < 12)).all(), width_a


def test_battles_from_judgments_v01():
    judgments = [
        # game 1: A = baseline; game 2: A = model.
        {"question_id": 1, "model": "m", "games": [{"score": "A>>B"}, {"score": "A>B"}]},
        {"question_id": 2, "model": "m", "games": [{"score": "B>A"}, {"score": "A=B"}]},
        {"question_id": 3, "model": "m", "games": [{"score": None}, {"score": "B>>A"}]},
    ]
    battles, n_unparsable = ah.battles_from_judgments(judgments, baseline="base", weight=3)
    assert n_unparsable == 1
    assert list(battles["winner"]) == ["model_a"] * 3 + ["model_b"] + ["model_b"] + ["tie"] + ["model_a"] * 3
    assert (battles["model_a"] == "base").all() and (battles["model_b"] == "m").all()
    # model wins 2 + tie 1 out of 9 rows -> 2.5 / 9
    score = ah.win_rate_vs_baseline(ah.bt_ratings(battles, baseline="base"), "base")["m"]
    assert score == pytest.approx(100 * 2.5 / 9, abs=1e-4)


def test_parse_verdict():
    assert ah.parse_verdict("... My final verdict is [[A>>B]].") == "A>>B"
    assert ah.parse_verdict("Tie: [[A=B]]") == "A=B"
    assert ah.parse_verdict("single brackets [B>A]") == "B>A"
    assert ah.parse_verdict("[[A>B]] ... no wait [[B>A]]") is None
    assert ah.parse_verdict("no verdict here") is None
    assert ah.parse_verdict(None) is None


def test_bad_battles_are_errors(battles):
    with pytest.raises(ValueError, match=r"missing field\(s\) \['winner'\]"):
        ah.bt_ratings(battles.drop(columns=["winner"]), baseline=BASELINE)
    bad = battles.copy()
    bad.loc[5, "winner"] = "model_c"
    with pytest.raises(ValueError, match="row 5: winner must be one of"):
        ah.bt_ratings(bad, baseline=BASELINE)
    with pytest.raises(ValueError, match="baseline 'gpt-4-0314' plays no battle"):
        ah.bt_ratings(battles, baseline="gpt-4-0314")


# ------------------------------------------------------------------------------------------------
# Style control, on synthetic battles with a planted length preference.


def _synthetic_style_battles(seed=0, n=600):
    """Baseline vs 2 models; the judge likes longer answers (log-odds +1.5 per unit of length ratio)."""
    rng = np.random.default_rng(seed)
    strength = {"short": 0.3, "long": 0.3}
    rows = []
    for i in range(n):
        model = "long" if i % 2 else "short"
        base_len = rng.integers(200, 600)
        m_len = int(base_len * (rng.uniform(1.5, 3.0) if model == "long" else rng.uniform(0.5, 1.2)))
        meta = {
            "sum_assistant_a_tokens": int(base_len),
            "sum_assistant_b_tokens": m_len,
            "header_count_a": {"h1": int(rng.integers(0, 3)), "h2": int(rng.integers(0, 2))},
            "header_count_b": {"h1": int(rng.integers(0, 3)), "h2": 0},
            "list_count_a": {"ordered": int(rng.integers(0, 5))},
            "list_count_b": {"ordered": int(rng.integers(0, 5))},
            "bold_count_a": {"**": int(rng.integers(0, 4))},
            "bold_count_b": {"**": int(rng.integers(0, 4))},
        }
        ratio = (m_len - base_len) / (m_len + base_len + 1)
        p_model = 1 / (1 + math.exp(-(strength[model] + 3.0 * ratio)))
        u = rng.uniform()
        winner = "model_b" if u < p_model * 0.9 else ("tie" if u < p_model * 0.9 + 0.1 else "model_a")
        rows.append({"question_id": i, "model_a": "base", "model_b": model, "winner": winner, "conv_metadata": meta})
    return pd.DataFrame(rows)


def _reference_style_fit(battles):
    """Independent v0.1 style-control fit: build X by hand, minimise 0.5|w|^2 + sum(log-loss) with scipy."""
    models = ["base", "long", "short"]
    feats = []
    for side in ("a", "b"):
        feats.append(
            np.array(
                [
                    [
                        m[f"sum_assistant_{side}_tokens"],
                        sum(m[f"header_count_{side}"].values()),
                        sum(m[f"list_count_{side}"].values()),
                        sum(m[f"bold_count_{side}"].values()),
                    ]
                    for m in battles["conv_metadata"]
                ],
                float,
            )
        )
    ratio = (feats[0] - feats[1]) / (feats[0] + feats[1] + 1)
    z = (ratio - ratio.mean(0)) / ratio.std(0)
    rows, labels = [], []
    for copy in (0, 1):
        for (_, battle), zi in zip(battles.iterrows(), z):
            x = np.zeros(len(models))
            x[models.index(battle["model_a"])] += math.log(10)
            x[models.index(battle["model_b"])] -= math.log(10)
            rows.append(np.concatenate([x, zi]))
            labels.append(float(battle["winner"] == "model_a" or (battle["winner"] == "tie" and copy == 0)))
    x, y = np.array(rows), np.array(labels)

    def objective(w):
        logits = x @ w
        return 0.5 * w @ w + np.sum(np.logaddexp(0, logits) - y * logits)

    def gradient(w):
        p = 1 / (1 + np.exp(-(x @ w)))
        return w + x.T @ (p - y)

    w = optimize.minimize(objective, np.zeros(x.shape[1]), jac=gradient, method="BFGS", options={"gtol": 1e-9}).x
    ratings = 400 * w[:3] + 1000
    return pd.Series(ratings + 1114 - ratings[0], index=models), w[3:]


def test_style_control_v01_matches_independent_fit():
    battles = _synthetic_style_battles()
    ratings, coefs, boot = ah.style_controlled_ratings(battles, baseline="base", num_rounds=20, seed=0)
    ref_ratings, ref_coefs = _reference_style_fit(battles)
    for model in ref_ratings.index:
        assert ratings[model] == pytest.approx(ref_ratings[model], abs=1e-2), model
    np.testing.assert_allclose(coefs, ref_coefs, atol=1e-4)
    assert ratings["base"] == pytest.approx(1114.0)
    assert coefs[0] > 0.3  # the planted preference for the longer answer (A longer -> A wins)
    assert boot.shape == (20, 3) and np.allclose(boot["base"], 1114.0)
    # Controlling for length removes most of the long model's advantage over the short one.
    raw = ah.leaderboard(battles, baseline="base", num_rounds=5).set_index("model")["score"]
    styled = ah.leaderboard(battles, baseline="base", num_rounds=5, style_features=["token_len"]).set_index("model")[
        "score"
    ]
    assert raw["long"] - raw["short"] > 15
    assert abs(styled["long"] - styled["short"]) < (raw["long"] - raw["short"]) / 2


# ------------------------------------------------------------------------------------------------
# v2.0.


def test_v2_scores_and_bootstrap_leaderboard():
    judgments = [
        {"uid": "q1", "model": "m", "games": [{"score": "B>A"}, {"score": "A>>B"}]},  # model wins both
        {"uid": "q2", "model": "m", "games": [{"score": "A=B"}, {"score": "B>A"}]},  # tie, model loses
        {"uid": "q3", "model": "m", "games": [None, {"score": "A>B"}]},  # dropped
    ]
    scores, skipped = ah2.scores_v2_from_judgments(judgments, weight=3)
    assert skipped == 1
    assert sorted(scores["score"]) == sorted([1.0, 1.0, 1.0, 1.0, 0.0, 0.5])
    board = ah2.leaderboard_v2(scores, baseline="base", num_rounds=200, seed=0).set_index("model")
    assert board.loc["m", "score"] == pytest.approx(100 * 4.5 / 6, abs=5)
    assert board.loc["base", "score"] == 50.0
    assert board.loc["m", "lower"] <= board.loc["m", "score"] <= board.loc["m", "upper"]


def test_v2_soft_bt_matches_torch_lbfgs():
    """The scikit-learn soft-label fit equals a direct torch LBFGS minimisation of the BT loss."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    n, n_models = 900, 3
    model_index = rng.integers(0, n_models, n)
    m_meta = np.stack(
        [rng.integers(100, 900, n), rng.integers(0, 5, n), rng.integers(0, 9, n), rng.integers(0, 6, n)], axis=1
    )
    b_meta = np.stack(
        [rng.integers(100, 900, n), rng.integers(0, 5, n), rng.integers(0, 9, n), rng.integers(0, 6, n)], axis=1
    )
    style = ah2.style_features_v2(m_meta, b_meta)
    logits = np.array([0.8, -0.2, 0.1])[model_index] + style @ np.array([0.9, 0.0, 0.3, -0.2])
    outcome = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-logits)), 1.0, 0.0)
    outcome[rng.uniform(size=n) < 0.1] = 0.5
    ours = ah2.fit_soft_bt(model_index, style, outcome, n_models)

    x = torch.tensor(np.concatenate([np.eye(n_models)[model_index], style], axis=1), dtype=torch.float64)
    y = torch.tensor(outcome, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w], lr=1.0, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        z = x @ w
        loss = -(y * torch.nn.functional.logsigmoid(z) + (1 - y) * torch.nn.functional.logsigmoid(-z)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(ours, w.detach().numpy(), atol=1e-4)
    assert ours[3] > 0.5  # the planted length coefficient 0.9 is recovered roughly

    scores = pd.DataFrame({"model": np.array(["a", "b", "c"])[model_index], "score": outcome})
    board = ah2.style_control_leaderboard_v2(scores, style, baseline="base", num_rounds=20, seed=0).set_index("model")
    expected = 100 / (1 + np.exp(-ours[:3]))
    for name, value in zip("abc", expected):
        assert board.loc[name, "score"] == pytest.approx(value, abs=3)
        assert board.loc[name, "lower"] <= board.loc[name, "score"] <= board.loc[name, "upper"]


def test_cli_arena_hard(evaldata_dir, tmp_path, battles):
    from alignax.evaluate import cli

    out = tmp_path / "board.csv"
    rc = cli.main(
        ["arena_hard", str(evaldata_dir / BATTLES), "--baseline", BASELINE, "--num-rounds", "10", "--output", str(out)]
    )
    assert rc == 0
    board = pd.read_csv(out).set_index("model")
    expected = ah.weighted_empirical_win_rate(battles, baseline=BASELINE)
    for model, value in expected.items():
        assert board.loc[model, "score"] == pytest.approx(value, abs=1e-4)
    assert cli.main(["arena_hard", "--baseline", BASELINE]) == 2  # neither battles nor judgments


def test_cli_arena_hard_judgments_v01_and_v2(tmp_path, capsys):
    import json

    from alignax.evaluate import cli

    path = tmp_path / "m.jsonl"
    records = [
        {
            "question_id": i,
            "uid": str(i),
            "model": "m",
            "games": [{"score": "B>A" if i % 3 else "A>B"}, {"score": "A>B" if i % 3 else "B>>A"}],
        }
        for i in range(30)
    ]
    records.append({"question_id": 99, "uid": "99", "model": "m", "games": [{"score": None}, {"score": "A>B"}]})
    path.write_text("\n".join(json.dumps(r) for r in records))
    out = tmp_path / "v01.csv"
    assert (
        cli.main(
            ["arena_hard", "--judgments", str(path), "--baseline", "base", "--num-rounds", "5", "--output", str(out)]
        )
        == 0
    )
    # 20 questions: model wins both games (2 rows); 10: baseline wins once and much (1 + 3 rows); 1 game unparsable.
    expected = 100 * (20 * 2 + 1) / (20 * 2 + 10 * 4 + 1)
    assert pd.read_csv(out).set_index("model").loc["m", "score"] == pytest.approx(expected, abs=1e-4)
    assert "skipped 1 unparsable game(s)" in capsys.readouterr().out
    out = tmp_path / "v2.csv"
    assert (
        cli.main(
            [
                "arena_hard",
                "--judgments",
                str(path),
                "--baseline",
                "base",
                "--v2",
                "--num-rounds",
                "50",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    board = pd.read_csv(out).set_index("model")
    assert board.loc["m", "score"] == pytest.approx(100 * 40 / 80, abs=5)
    assert board.loc["base", "score"] == 50.0
