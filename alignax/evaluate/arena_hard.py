"""Arena-Hard-Auto: Bradley-Terry scores against a baseline, bootstrap CIs and style control.

Restated from lmarena/arena-hard-auto (v0.1: `show_result.py` + `utils_math.py` at 0489bf3;
v2.0: `show_result.py` + `utils/math_utils.py`); protocol in docs/evaluation.md.

v0.1 (the paper and the 2024 leaderboard). Each question gives two games with positions swapped;
a verdict "A>>B"/"B>>A" counts `weight` (3) times, ">" once, "=" is a tie. Battles are rows
(model_a, model_b, winner in {model_a, model_b, tie}). Bradley-Terry by logistic regression on
the battles duplicated (a tie = one win for A in the first copy, one loss in the second):
    P(A beats B) = 1 / (1 + 10^((R_B - R_A) / 400)),   X[a] = +ln 10, X[b] = -ln 10,
fitted unpenalised without intercept; R = 400 * coef + 1000, shifted so the baseline is 1000.
Score = 100 * P(model beats baseline). CI: the 2.5 / 97.5 percentiles over bootstrap rounds that
resample battle rows. With every model playing only the baseline the fit decouples and the score
equals the weighted empirical win rate (wins + ties / 2) / n.
Style control (v0.1): per battle and feature f in (token_len, header_count, list_count,
bold_count): (f_A - f_B) / (f_A + f_B + 1), z-scored over battles (ddof 0), appended to X; fitted
with scikit-learn's default L2 (C = 1); anchored at 1114; bootstrap keeps a tie's two rows together.

v2.0 scoring: alignax/evaluate/arena_hard_v2.py.
"""

from __future__ import annotations

import math
import pathlib
import re
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from alignax import files
from alignax.evaluate.cli import naming_file, positive_int

__all__ = [
    "STYLE_FEATURES",
    "battles_from_judgments",
    "bootstrap_ratings",
    "bt_ratings",
    "leaderboard",
    "load_battles",
    "parse_verdict",
    "weighted_empirical_win_rate",
    "win_rate_vs_baseline",
]

PathLike = Union[str, pathlib.Path]
STYLE_FEATURES = ("token_len", "header_count", "list_count", "bold_count")
_TIES = ("tie", "tie (bothbad)")
_WINNERS = ("model_a", "model_b") + _TIES
_VERDICT_PATTERNS = (re.compile(r"\[\[([AB<>=]+)\]\]"), re.compile(r"\[([AB<>=]+)\]"))


# ------------------------------------------------------------------------------------------------
# Reading judgments and battles.


def _read_jsonl_lines(path: PathLike) -> list[tuple[int, dict]]:
    """(line number, object) per non-blank line (alignax.files.read_jsonl_records)."""
    return files.read_jsonl_records(path)


def _read_jsonl(path: PathLike) -> list[dict]:
    return [row for _, row in _read_jsonl_lines(path)]


def check_count(name: str, value: Any) -> None:
    """Weights and bootstrap rounds are integers >= 1: a weight <= 0 silently drops strong verdicts,
    and zero bootstrap rounds have no quantiles."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def load_battles(path: PathLike) -> pd.DataFrame:
    """Battles JSONL (one battle per line: model_a, model_b, winner; weight already expanded)."""
    lines = _read_jsonl_lines(path)
    for line_no, row in lines:
        for field in ("model_a", "model_b"):
            if field in row and not (isinstance(row[field], str) and row[field]):
                raise ValueError(f"{path}:{line_no}: {field} must be a model name, got {row[field]!r}")
    battles = pd.DataFrame([row for _, row in lines])
    battles.attrs["source"] = str(path)
    _check_battles(battles)
    return battles


def _check_battles(battles: pd.DataFrame) -> None:
    source = battles.attrs.get("source", "battles")
    if battles.empty:
        raise ValueError(f"{source}: no battles")
    missing = [c for c in ("model_a", "model_b", "winner") if c not in battles.columns]
    if missing:
        raise ValueError(f"{source}: missing field(s) {missing}; has {list(battles.columns)}")
    bad = ~battles["winner"].isin(_WINNERS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{source}: row {i}: winner must be one of {list(_WINNERS)}, got {battles['winner'].iloc[i]!r}"
        )
    same = battles["model_a"] == battles["model_b"]
    if same.any():
        i = int(np.flatnonzero(same)[0])
        raise ValueError(f"{source}: row {i}: a model battles itself ({battles['model_a'].iloc[i]!r})")


def parse_verdict(judgment: Optional[str]) -> Optional[str]:
    """The verdict label ("A>>B", "A=B", ...) in a judge's text, or None when there is none.

    As v0.1's `get_score`: `[[X]]` first, then `[X]`; several different labels = unparsable.
    """
    if not judgment:
        return None
    for pattern in _VERDICT_PATTERNS:
        labels = set(pattern.findall(judgment))
        if len(labels) == 1:
            return labels.pop().strip("\n")
        if len(labels) > 1:
            return None
    return None


_V01_OUTCOME = {
    "A>B": ("a", 1),
    "A>>B": ("a", None),
    "A=B": ("tie", 1),
    "B>A": ("b", 1),
    "B>>A": ("b", None),
    "A<B": ("b", 1),
    "A<<B": ("b", None),
    "B<A": ("a", 1),
    "B<<A": ("a", None),
    "B=A": ("tie", 1),
}


def judgment_games(record: Any, where: str, *, baseline: str) -> list:
    """The games of one judgment record, after checking its shape (names `where` on errors)."""
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
    for field in ("model", "games"):
        if field not in record:
            raise ValueError(f"{where}: missing field {field!r}")
    if not isinstance(record["model"], str) or not record["model"]:
        raise ValueError(f"{where}: model must be a model name, got {record['model']!r}")
    if record["model"] == baseline:
        raise ValueError(f"{where}: the judged model is the baseline {baseline!r}")
    games = record["games"]
    if not isinstance(games, list) or not all(g is None or isinstance(g, Mapping) for g in games):
        raise ValueError(f"{where}: games must be a list of objects, got {games!r:.80}")
    return games


def battles_from_judgments(
    judgments: Sequence[Mapping[str, Any]],
    *,
    baseline: str,
    weight: int = 3,
    first_game_only: bool = False,
    row_names: Optional[Sequence[str]] = None,
) -> tuple[pd.DataFrame, int]:
    """v0.1 battles from judgment records (`question_id`, `model`, `games[2]{score}`).

    Game 1 shows A = baseline, game 2 A = model (mapped back). Returns (battles, n_unparsable):
    an unparsable game gives no battle and is counted. `row_names[k]` names record k in errors
    (e.g. "file.jsonl:12"); `weight` (copies of a strong verdict) must be >= 1.
    """
    check_count("weight", weight)
    rows, n_unparsable = [], 0
    for k, record in enumerate(judgments):
        where = row_names[k] if row_names is not None else f"judgment {k}"
        games = judgment_games(record, where, baseline=baseline)
        games = games[:1] if first_game_only else games[:2]
        for g, game in enumerate(games):
            label = (game or {}).get("score")
            label = label if isinstance(label, str) else None
            if label not in _V01_OUTCOME:
                n_unparsable += 1
                continue
            side, count = _V01_OUTCOME[label]
            count = weight if count is None else count
            if side == "tie":
                winner = "tie"
            else:
                # In game 2 the model sits in position A, so A's win is the model's (model_b's) win.
                a_wins = (side == "a") == (g == 0)
                winner = "model_a" if a_wins else "model_b"
            row = {
                "question_id": record.get("question_id", record.get("uid")),
                "model_a": baseline,
                "model_b": record["model"],
                "winner": winner,
            }
            rows.extend([row] * count)
    if not rows:
        raise ValueError("no parsable judgments")
    return pd.DataFrame(rows), n_unparsable


# ------------------------------------------------------------------------------------------------
# Bradley-Terry (v0.1).


def _bt_design(battles: pd.DataFrame, models: pd.Index, *, base: float) -> tuple[np.ndarray, np.ndarray]:
    """Duplicated design: X[a] = +ln base, X[b] = -ln base; y = 1 for A wins and a tie's first copy."""
    n = len(battles)
    a = models.get_indexer(battles["model_a"])
    b = models.get_indexer(battles["model_b"])
    x = np.zeros((2 * n, len(models)))
    rows = np.arange(2 * n)
    x[rows, np.concatenate([a, a])] = math.log(base)
    x[rows, np.concatenate([b, b])] = -math.log(base)
    a_wins = (battles["winner"] == "model_a").to_numpy()
    tie = battles["winner"].isin(_TIES).to_numpy()
    y = np.concatenate([a_wins | tie, a_wins]).astype(float)
    return x, y


def _collapse_identical_rows(x: np.ndarray, y: np.ndarray):
    """Unique (row, label) pairs with their counts: the same likelihood as the repeated rows, and
    a design of a few dozen rows instead of thousands (bootstrap rounds refit it many times)."""
    unique, counts = np.unique(np.concatenate([x, y[:, None]], axis=1), axis=0, return_counts=True)
    return unique[:, :-1], unique[:, -1], counts.astype(float)


def _models_of(battles: pd.DataFrame) -> pd.Index:
    return pd.Index(pd.unique(pd.concat([battles["model_a"], battles["model_b"]])))


def bt_ratings(
    battles: pd.DataFrame,
    *,
    baseline: str,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
    anchor: float = 1000.0,
) -> pd.Series:
    """Bradley-Terry ratings (Elo scale) from battles, the baseline anchored at `anchor`."""
    _check_battles(battles)
    models = _models_of(battles)
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} plays no battle; models are {list(models)}")
    if len(models) < 2:
        raise ValueError("Bradley-Terry needs at least two models")
    x, y = _bt_design(battles, models, base=base)
    x, y, counts = _collapse_identical_rows(x, y)
    # C = inf is scikit-learn's unpenalised fit (upstream: penalty=None, tol=1e-8).
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8, max_iter=1000)
    lr.fit(x, y, sample_weight=counts)
    ratings = scale * lr.coef_[0] + init_rating
    ratings = ratings + anchor - ratings[models.get_loc(baseline)]
    return pd.Series(ratings, index=models)


def win_rate_vs_baseline(ratings: pd.Series, baseline: str, *, scale: float = 400.0, base: float = 10.0) -> pd.Series:
    """100 / (1 + base^((R_baseline - R_model) / scale)); the baseline itself is 50."""
    return 100.0 / (1.0 + base ** ((ratings[baseline] - ratings) / scale))


def weighted_empirical_win_rate(battles: pd.DataFrame, *, baseline: str) -> pd.Series:
    """Per model: 100 * (wins + ties / 2) / battles, over its battles against the baseline."""
    _check_battles(battles)
    rates = {}
    for side, other in (("model_a", "model_b"), ("model_b", "model_a")):
        sub = battles[battles[other] == baseline]
        for model, group in sub.groupby(side):
            won = (group["winner"] == side).sum() + 0.5 * group["winner"].isin(_TIES).sum()
            prev = rates.get(model, (0.0, 0))
            rates[model] = (prev[0] + won, prev[1] + len(group))
    return pd.Series({m: 100.0 * w / n for m, (w, n) in rates.items()})


def bootstrap_ratings(
    battles: pd.DataFrame, *, baseline: str, num_rounds: int = 100, seed: int = 0, **bt_kwargs
) -> pd.DataFrame:
    """[num_rounds, models] ratings, each fitted on battle rows resampled with replacement."""
    check_count("num_rounds", num_rounds)
    rng = np.random.default_rng(seed)
    rounds = []
    with threadpool_limits(1):  # tiny fits: BLAS threads only add overhead (6x slower on 2 cores)
        for _ in range(num_rounds):
            idx = rng.integers(0, len(battles), len(battles))
            rounds.append(bt_ratings(battles.iloc[idx].reset_index(drop=True), baseline=baseline, **bt_kwargs))
    return pd.DataFrame(rounds).reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# Style control (v0.1).


def _style_values(battles: pd.DataFrame, side: str) -> np.ndarray:
    """[n, 4] style counts of `side` ("a" or "b") from `conv_metadata` (upstream key names)."""
    keys = {
        "token_len": f"sum_assistant_{side}_tokens",
        "header_count": f"header_count_{side}",
        "list_count": f"list_count_{side}",
        "bold_count": f"bold_count_{side}",
    }
    out = np.zeros((len(battles), len(STYLE_FEATURES)))
    for i, meta in enumerate(battles["conv_metadata"]):
        if not isinstance(meta, Mapping):
            raise ValueError(f"battle {i}: conv_metadata is missing")
        for j, feature in enumerate(STYLE_FEATURES):
            if keys[feature] not in meta:
                raise ValueError(f"battle {i}: conv_metadata has no {keys[feature]!r}")
            value = meta[keys[feature]]
            values = list(value.values()) if isinstance(value, Mapping) else [value]  # e.g. list_count per level
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise ValueError(f"battle {i}: conv_metadata {keys[feature]!r} must be a count, got {value!r}")
            out[i, j] = sum(values)
    return out


def style_features_v01(battles: pd.DataFrame, features: Sequence[str] = STYLE_FEATURES) -> np.ndarray:
    """[n, k] z-scored (f_A - f_B) / (f_A + f_B + 1) for the chosen features (ddof 0)."""
    cols = [STYLE_FEATURES.index(f) for f in features]
    a, b = _style_values(battles, "a")[:, cols], _style_values(battles, "b")[:, cols]
    ratio = (a - b) / (a + b + 1.0)
    std = ratio.std(axis=0)
    if np.any(std == 0):
        raise ValueError(f"style feature(s) {[f for f, s in zip(features, std) if s == 0]} are constant over battles")
    return (ratio - ratio.mean(axis=0)) / std


def _fit_style_bt(x_models, style, y, models, baseline, *, scale, anchor):
    lr = LogisticRegression(fit_intercept=False)  # upstream: scikit-learn default (L2, C = 1)
    lr.fit(np.concatenate([x_models, style], axis=1), y)
    p = x_models.shape[1]
    ratings = scale * lr.coef_[0][:p] + 1000.0
    ratings = ratings + anchor - ratings[models.get_loc(baseline)]
    return pd.Series(ratings, index=models), lr.coef_[0][p:]


def style_controlled_ratings(
    battles: pd.DataFrame,
    *,
    baseline: str,
    features: Sequence[str] = STYLE_FEATURES,
    num_rounds: int = 100,
    seed: int = 0,
    scale: float = 400.0,
    base: float = 10.0,
    anchor: float = 1114.0,
):
    """v0.1 style control: (ratings, style coefficients, bootstrap ratings [rounds, models])."""
    check_count("num_rounds", num_rounds)
    _check_battles(battles)
    models = _models_of(battles)
    n = len(battles)
    x, y = _bt_design(battles, models, base=base)
    style = style_features_v01(battles, features)
    style = np.concatenate([style, style])
    ratings, coefs = _fit_style_bt(x, style, y, models, baseline, scale=scale, anchor=anchor)
    rng = np.random.default_rng(seed)
    tie = battles["winner"].isin(_TIES).to_numpy()
    rounds = []
    with threadpool_limits(1):  # tiny fits: BLAS threads only add overhead
        for _ in range(num_rounds):
            idx = rng.integers(0, n, n)
            # A non-tie battle is its two identical rows; a tie keeps its win row and its loss row.
            rows = np.concatenate([idx[~tie[idx]], idx[~tie[idx]], idx[tie[idx]], idx[tie[idx]] + n])
            rounds.append(_fit_style_bt(x[rows], style[rows], y[rows], models, baseline, scale=scale, anchor=anchor)[0])
    return ratings, coefs, pd.DataFrame(rounds).reset_index(drop=True)


def leaderboard(
    battles: pd.DataFrame,
    *,
    baseline: str,
    num_rounds: int = 100,
    seed: int = 0,
    style_features: Optional[Sequence[str]] = None,
) -> pd.DataFrame:
    """v0.1 leaderboard: model, score, lower, upper (win rates vs the baseline, %), rating."""
    check_count("num_rounds", num_rounds)
    if style_features:
        ratings, _, boot = style_controlled_ratings(
            battles, baseline=baseline, features=style_features, num_rounds=num_rounds, seed=seed
        )
    else:
        ratings = bt_ratings(battles, baseline=baseline)
        boot = bootstrap_ratings(battles, baseline=baseline, num_rounds=num_rounds, seed=seed)
    lower, upper = boot.quantile(0.025), boot.quantile(0.975)
    table = pd.DataFrame(
        {
            "model": ratings.index,
            "score": win_rate_vs_baseline(ratings, baseline).to_numpy(),
            "lower": win_rate_vs_baseline(lower, baseline).reindex(ratings.index).to_numpy(),
            "upper": win_rate_vs_baseline(upper, baseline).reindex(ratings.index).to_numpy(),
            "rating": ratings.to_numpy(),
        }
    )
    return table.sort_values("score", ascending=False).reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# Command line: `python -m alignax.evaluate arena_hard BATTLES.jsonl --baseline MODEL`.


def add_arguments(parser) -> None:
    parser.description = (
        "Arena-Hard-Auto v0.1 Bradley-Terry scores (win rate vs the baseline, %) with "
        "bootstrap CIs, from a battles JSONL (model_a, model_b, winner) or judgment JSONL "
        "files (question_id, model, games[2].score)."
    )
    parser.epilog = (
        "examples:\n"
        "  python -m alignax.evaluate arena_hard battles.jsonl --baseline claude-3-haiku-20240307\n"
        "  python -m alignax.evaluate arena_hard --judgments judgments/*.jsonl --baseline gpt-4-0314 \\\n"
        "      --num-rounds 100 --seed 0 --output leaderboard.csv\n"
        "  python -m alignax.evaluate arena_hard battles_with_conv_metadata.jsonl --baseline gpt-4-0314 "
        "--style-control token_len header_count list_count bold_count\n"
    )
    parser.add_argument("battles", nargs="?", help="battles JSONL (weights already expanded)")
    parser.add_argument("--judgments", nargs="+", default=[], help="v0.1 judgment JSONL files instead of battles")
    parser.add_argument("--baseline", required=True, help="the anchor model (v0.1: gpt-4-0314)")
    parser.add_argument("--weight", type=positive_int, default=3, help="copies of a strong (>>) verdict (>= 1)")
    parser.add_argument("--num-rounds", type=positive_int, default=100, help="bootstrap rounds (>= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--style-control",
        nargs="+",
        default=None,
        choices=STYLE_FEATURES,
        metavar="FEATURE",
        help=f"control for style features (battles need conv_metadata): {', '.join(STYLE_FEATURES)}",
    )
    parser.add_argument(
        "--v2", action="store_true", help="v2.0 scoring of --judgments (mean of bootstrap means, 5-95%% interval)"
    )
    parser.add_argument("--output", default=None, help="write the leaderboard to this CSV")


def _read_judgments(paths: Sequence[PathLike]) -> tuple[list[dict], list[str]]:
    """Records of several judgment files and their names ("file:line") for error messages."""
    records, names = [], []
    for path in paths:
        for line_no, row in _read_jsonl_lines(path):
            records.append(row)
            names.append(f"{path}:{line_no}")
    return records, names


def run(args) -> int:
    if bool(args.battles) == bool(args.judgments):
        raise ValueError("give either a battles file or --judgments files")
    check_count("--weight", args.weight)
    check_count("--num-rounds", args.num_rounds)
    if args.v2:
        from alignax.evaluate.arena_hard_v2 import leaderboard_v2, scores_v2_from_judgments

        if not args.judgments or args.style_control:
            raise ValueError("--v2 scores --judgments files (style control for v2.0 is the Python API)")
        records, names = _read_judgments(args.judgments)
        with naming_file(", ".join(map(str, args.judgments))):
            scores, skipped = scores_v2_from_judgments(
                records, weight=args.weight, baseline=args.baseline, row_names=names
            )
        if skipped:
            print(f"skipped {skipped} judgment(s) with a missing or unknown verdict")
        table = leaderboard_v2(scores, baseline=args.baseline, num_rounds=args.num_rounds, seed=args.seed)
    elif args.battles:
        with naming_file(args.battles):
            battles = load_battles(args.battles)
            if args.style_control:  # the features are read from each battle's conv_metadata
                style_features_v01(battles, args.style_control)
    else:
        records, names = _read_judgments(args.judgments)
        with naming_file(", ".join(map(str, args.judgments))):
            battles, n_unparsable = battles_from_judgments(
                records, baseline=args.baseline, weight=args.weight, row_names=names
            )
        if n_unparsable:
            print(f"skipped {n_unparsable} unparsable game(s)")
    if not args.v2:
        table = leaderboard(
            battles,
            baseline=args.baseline,
            num_rounds=args.num_rounds,
            seed=args.seed,
            style_features=args.style_control,
        )
    interval = "90% CI" if args.v2 else "95% CI"
    for _, row in table.iterrows():
        print(
            f"{row['model']:<40} score {row['score']:6.2f}  {interval} ({row['lower'] - row['score']:+.2f}, "
            f"{row['upper'] - row['score']:+.2f})"
        )
    if args.output:
        table.to_csv(args.output, index=False)
        print(f"wrote {args.output}")
    return 0
