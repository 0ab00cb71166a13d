"""Arena-Hard-Auto v2.0 scoring: per-battle scores, bootstrap means and style control.

Restated from lmarena/arena-hard-auto v2.0 (`show_result.py` + `utils/math_utils.py`); v0.1 (the
paper's Bradley-Terry over battles) is alignax/evaluate/arena_hard.py, whose judgment reader this
module shares.

Per judgment the game scores are s(game 2 label) and 1 - s(game 1 label) with s(A>B) = 1,
s(A>>B) = [1, 1, 1], s(A=B) = 0.5 (B mirrored); score = mean of per-model bootstrap means, CI the
5 / 95 % quantiles. With style control: features model minus baseline, length
(m - b) / (m + b), markdown densities d = count / (token_len + 1) and (d_m - d_b) / (d_m + d_b + 1),
z-scored (ddof 1); soft-outcome BT logit = c_model - c_baseline + beta . features; win rate
sigmoid(c_model - c_baseline); median and 5 / 95 % quantiles over bootstrap rounds.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from alignax.evaluate.arena_hard import check_count, judgment_games

__all__ = [
    "fit_soft_bt",
    "leaderboard_v2",
    "scores_v2_from_judgments",
    "style_control_leaderboard_v2",
    "style_features_v2",
]

_V2_SCORE = {"A>B": [1.0], "A=B": [0.5], "A<B": [0.0], "B>A": [0.0], "B=A": [0.5], "B<A": [1.0]}


def _v2_label_scores(label: str, weight: int) -> list[float]:
    strong = {"A>>B": 1.0, "A<<B": 0.0, "B>>A": 0.0, "B<<A": 1.0}
    if label in strong:
        return [strong[label]] * weight
    return list(_V2_SCORE[label])


def scores_v2_from_judgments(
    judgments: Sequence[Mapping[str, Any]],
    *,
    weight: int = 3,
    baseline: Optional[str] = None,
    row_names: Optional[Sequence[str]] = None,
) -> tuple[pd.DataFrame, int]:
    """v2.0 per-battle scores: rows (uid, model, score in {0, 0.5, 1}); (frame, n skipped judgments).

    Game 2 (model in position A) scores s(label), game 1 scores 1 - s(label); a judgment with a
    missing or unknown label in either game is skipped, as upstream drops null games.
    `row_names[k]` names record k in errors; `weight` must be >= 1.
    """
    check_count("weight", weight)
    rows, skipped = [], 0
    known = set(_V2_SCORE) | {"A>>B", "A<<B", "B>>A", "B<<A"}
    for k, record in enumerate(judgments):
        where = row_names[k] if row_names is not None else f"judgment {k}"
        if isinstance(record, Mapping) and record.get("games") is None:
            skipped += 1  # no games at all: skipped like a null game
            continue
        games = judgment_games(record, where, baseline=baseline)
        labels = [(g or {}).get("score") for g in games[:2]]
        labels = [label if isinstance(label, str) else None for label in labels]
        if len(labels) < 2 or any(label not in known for label in labels):
            skipped += 1
            continue
        scores = _v2_label_scores(labels[1], weight) + [1.0 - s for s in _v2_label_scores(labels[0], weight)]
        uid = record.get("uid", record.get("question_id"))
        rows.extend({"uid": uid, "model": record["model"], "score": s} for s in scores)
    if not rows:
        raise ValueError("no usable judgments")
    return pd.DataFrame(rows), skipped


def leaderboard_v2(scores: pd.DataFrame, *, baseline: str, num_rounds: int = 100, seed: int = 0) -> pd.DataFrame:
    """v2.0 without style control: per model, mean of bootstrap means and the 5 / 95 % quantiles (%)."""
    check_count("num_rounds", num_rounds)
    rng = np.random.default_rng(seed)
    rows = []
    for model, group in scores.groupby("model", sort=True):
        values = group["score"].to_numpy(float)
        means = values[rng.integers(0, len(values), (num_rounds, len(values)))].mean(axis=1)
        rows.append(
            {
                "model": model,
                "score": 100 * means.mean(),
                "lower": 100 * np.quantile(means, 0.05),
                "upper": 100 * np.quantile(means, 0.95),
            }
        )
    rows.append({"model": baseline, "score": 50.0, "lower": 50.0, "upper": 50.0})
    return pd.DataFrame(rows).sort_values("score", ascending=False).reset_index(drop=True)


def style_features_v2(
    model_meta: np.ndarray, baseline_meta: np.ndarray, features: Sequence[str] = ("length", "markdown")
) -> np.ndarray:
    """[n, k] v2.0 style features from [n, 4] counts (token_len, header, list, bold), z-scored (ddof 1)."""
    m, b = np.asarray(model_meta, float), np.asarray(baseline_meta, float)
    if m.shape != b.shape or m.ndim != 2 or m.shape[1] != 4:
        raise ValueError(f"style metadata must be [n, 4] for model and baseline; got {m.shape} and {b.shape}")
    length = (m[:, :1] - b[:, :1]) / (m[:, :1] + b[:, :1])
    m_density, b_density = m[:, 1:] / (m[:, :1] + 1.0), b[:, 1:] / (b[:, :1] + 1.0)
    markdown = (m_density - b_density) / (m_density + b_density + 1.0)
    parts = {"length": length, "markdown": markdown}
    unknown = set(features) - set(parts)
    if unknown or not features:
        raise ValueError(f"style features must be a non-empty subset of {list(parts)}; got {list(features)}")
    f = np.concatenate([parts[k] for k in ("length", "markdown") if k in features], axis=1)
    return (f - f.mean(axis=0)) / f.std(axis=0, ddof=1)


def fit_soft_bt(model_index: np.ndarray, style: np.ndarray, outcome: np.ndarray, n_models: int) -> np.ndarray:
    """Maximum-likelihood [n_models + k] coefficients of P = sigmoid(c[model] + beta . style), c_baseline = 0.

    Soft outcomes in [0, 1] enter as two weighted rows (label 1 with weight y, label 0 with 1 - y),
    the same likelihood as upstream's BT loss; the baseline's coefficient is fixed at 0 because
    only differences to it are identified.
    """
    n = len(outcome)
    x = np.zeros((n, n_models))
    x[np.arange(n), model_index] = 1.0
    x = np.concatenate([x, style], axis=1)
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10_000)
    lr.fit(
        np.concatenate([x, x]),
        np.concatenate([np.ones(n), np.zeros(n)]),
        sample_weight=np.concatenate([outcome, 1.0 - outcome]),
    )
    return lr.coef_[0]


def style_control_leaderboard_v2(
    scores: pd.DataFrame, style: np.ndarray, *, baseline: str, num_rounds: int = 100, seed: int = 0
) -> pd.DataFrame:
    """v2.0 style-controlled leaderboard: median and 5 / 95 % win rates vs the baseline (%).

    `scores` rows (model, score) align with `style` rows (their v2 style features).
    """
    check_count("num_rounds", num_rounds)
    models = sorted(scores["model"].unique())
    index = np.searchsorted(models, scores["model"].to_numpy())
    outcome = scores["score"].to_numpy(float)
    rng = np.random.default_rng(seed)
    rounds = []
    with threadpool_limits(1):  # tiny fits: BLAS threads only add overhead
        for _ in range(num_rounds):
            idx = rng.integers(0, len(outcome), len(outcome))
            coef = fit_soft_bt(index[idx], style[idx], outcome[idx], len(models))
            rounds.append(100.0 / (1.0 + np.exp(-coef[: len(models)])))
    boot = pd.DataFrame(rounds, columns=models)
    table = pd.DataFrame(
        {
            "model": models,
            "score": boot.median().to_numpy(),
            "lower": boot.quantile(0.05).to_numpy(),
            "upper": boot.quantile(0.95).to_numpy(),
        }
    )
    table = pd.concat([table, pd.DataFrame([{"model": baseline, "score": 50.0, "lower": 50.0, "upper": 50.0}])])
    return table.sort_values("score", ascending=False).reset_index(drop=True)
