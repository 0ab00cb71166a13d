"""AlpacaEval 2: raw win rates and the length-controlled (LC) win rate.

Definitions (restated from alpaca-eval 0.6.6, `metrics/winrate.py`, `metrics/helpers.py` and
`metrics/glm_winrate.py`; protocol in docs/evaluation.md):

Preferences. The judge's preference lies in [1, 2]: 1 = the baseline (output_1, generator_1) is
better, 2 = the evaluated model (output_2, generator_2) is better; 0 and 1.5 are draws; NaN means
the judge gave no usable verdict (a counted skip).

Raw metrics (`winrate_metrics`), with q = preference - 1 over annotated rows:
    win_rate = 100 * mean(q)            standard_error = 100 * SEM(q)  (ddof = 1)
    n_wins = #(q > 0.5)   n_wins_base = #(q < 0.5)   n_draws = #(preference in {0, 1.5})
    discrete_win_rate = 100 * (#wins + #draws / 2) / n with each preference rounded to {1, 2}
    avg_length = int(mean(len(model output in characters)))

Length-controlled win rate (`length_controlled_winrate`), GLM `length_controlled_v1`:
    logit P(model beats baseline on i) = gamma * tanh(std_delta_len_i) + phi * difficulty_i + theta
    std_delta_len_i = (len(output_1) - len(output_2)) / std_j(len(output_1) - len(output_2))
The target y = preference - 1 in [0, 1] is a soft label (each row appears once with label 1 and
weight y, once with label 0 and weight 1 - y). The fit also sees the "gamed" rows (the baseline's
own verbose/concise variants against it, with theta's feature 0) at weight lambda / 2 = 0.1, which
pulls gamma and phi towards values that explain pure length gaming. Fit: scikit-learn
LogisticRegressionCV, L1, liblinear, no intercept, 10 Cs, GroupKFold(5) over the original rows,
scored by the continuous log-loss. Read-out with std_delta_len = 0:
    LC = 100 * mean_i sigmoid(phi * difficulty_i + theta)     lc_standard_error = 100 * SEM_i
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import pathlib
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import make_scorer
from sklearn.model_selection import GroupKFold

from alignax.evaluate.alpaca_annotations import (
    PathLike,
    describe_row,
    first_bad_row,
    load_annotations,
    load_df_gamed,
    preferences,
    require_columns,
    require_strings,
    single_model,
    source_name,
)

__all__ = [
    "GLM_VARIANTS",
    "LengthControlledFit",
    "align_to_eval_set",
    "average_length",
    "fit_length_controlled_glm",
    "is_extreme_change",
    "length_controlled_winrate",
    "load_annotations",
    "load_df_gamed",
    "winrate_metrics",
]

RAW_METRIC_KEYS = (
    "win_rate",
    "standard_error",
    "n_wins",
    "n_wins_base",
    "n_draws",
    "n_total",
    "discrete_win_rate",
)
LC_KEYS = RAW_METRIC_KEYS + ("length_controlled_winrate", "lc_standard_error")

# Columns of the fitted design matrix, named as the published weights CSV names them.
FEATURE_NAMES = ("np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)")


@dataclasses.dataclass(frozen=True)
class GLMVariant:
    """One of alpaca-eval's `GLM_INFO` entries."""

    use_instruction_difficulty: bool
    regularize_to_baseline_lambda: Optional[float]
    n_splits: int = 5


GLM_VARIANTS = {
    "length_controlled_v1": GLMVariant(True, 0.2),
    "length_controlled_noreg": GLMVariant(True, None),
    "length_controlled_minimal": GLMVariant(False, None),
}

_ANNOTATION_FIELDS_LC = ("output_1", "output_2", "generator_1", "generator_2", "preference")


def align_to_eval_set(annotations: pd.DataFrame, eval_instructions: Sequence[str]) -> pd.DataFrame:
    """Re-indexes annotations by the position of their instruction in the evaluation set.

    alpaca-eval takes the instruction index from the row position, which shifts the difficulty
    look-up after a missing instruction; aligning by text avoids that. Instructions that are not in
    the evaluation set, or that occur twice, are errors (they would silently mix two benchmarks);
    evaluation-set instructions without an annotation are a counted skip (logged).
    """
    require_columns(annotations, ["instruction"])
    require_strings(annotations, "instruction")
    position = {}
    for i, text in enumerate(eval_instructions):
        position.setdefault(text, i)
    unknown = [t for t in annotations["instruction"] if t not in position]
    if unknown:
        raise ValueError(
            f"{source_name(annotations)}: {len(unknown)} instruction(s) are not in the evaluation set, "
            f"e.g. {unknown[0][:80]!r}"
        )
    dup = annotations["instruction"].duplicated()
    if dup.any():
        raise ValueError(
            f"{source_name(annotations)}: instruction annotated twice: {annotations['instruction'][dup].iloc[0][:80]!r}"
        )
    out = annotations.copy()
    out.index = pd.Index([position[t] for t in annotations["instruction"]], name=None)
    out = out.sort_index()
    n_missing = len(position) - len(out)
    if n_missing:
        logging.warning(
            "%s: %d evaluation-set instruction(s) have no annotation; they are skipped",
            source_name(annotations),
            n_missing,
        )
    return out


# ------------------------------------------------------------------------------------------------
# Raw metrics.


def winrate_metrics(annotations: Union[pd.DataFrame, Sequence[Mapping[str, Any]]]) -> dict[str, float]:
    """The leaderboard's raw metrics (see the module docstring) from per-instruction preferences.

    Rows with a NaN preference (no verdict) are skipped and counted in the log, as alpaca-eval does.
    """
    df = annotations if isinstance(annotations, pd.DataFrame) else pd.DataFrame.from_records(annotations)
    pref = preferences(df)
    n_skipped = int(pref.isna().sum())
    if n_skipped:
        logging.warning("%s: %d annotation(s) without a preference are skipped", source_name(df), n_skipped)
    is_draw = (pref == 0) | (pref == 1.5)
    pref = pref.replace(0.0, 1.5).dropna()
    if pref.empty:
        raise ValueError(f"{source_name(df)}: no annotation has a preference")
    q = pref - 1.0
    # Discrete: draws stay draws; anything else rounds to the nearer of baseline/model.
    discrete = np.where(pref == 1.5, 0.5, np.round(q))
    return dict(
        win_rate=float(q.mean() * 100),
        standard_error=float(q.sem() * 100) if len(q) > 1 else float("nan"),
        n_wins=int((q > 0.5).sum()),
        n_wins_base=int((q < 0.5).sum()),
        n_draws=int(is_draw.sum()),
        n_total=int(len(q)),
        discrete_win_rate=float(discrete.mean() * 100),
    )


def average_length(
    outputs: Union[pd.DataFrame, Sequence[str], Sequence[Mapping[str, Any]]], *, field: str = "output_2"
) -> int:
    """int(mean(number of characters)) of the model's outputs, as the leaderboard's `avg_length`.

    `outputs` is an annotations frame (the model's outputs are `output_2`), a list of strings, or the
    records of a `model_outputs.json` (field `output`). The leaderboard averages over all of the
    model's outputs, so pass `model_outputs.json` where some annotations are missing.
    """
    if isinstance(outputs, pd.DataFrame):
        require_columns(outputs, [field])
        texts = outputs[field]
    else:
        outputs = list(outputs)
        texts = [o["output"] if isinstance(o, Mapping) else o for o in outputs]
        texts = pd.Series(texts, dtype=object)
    if len(texts) == 0:
        raise ValueError("average_length: no outputs")
    if texts.isna().any():
        raise ValueError(f"average_length: {int(texts.isna().sum())} output(s) are missing ({field!r} is null)")
    return int(texts.str.len().mean())


# ------------------------------------------------------------------------------------------------
# Length-controlled win rate.


@dataclasses.dataclass(frozen=True)
class LengthControlledFit:
    """The fitted GLM of one model against its baseline."""

    weights: dict[str, float]  # keyed by FEATURE_NAMES
    predicted_preferences: np.ndarray  # [n_instructions], sigmoid(phi * d_i + theta)
    C: float  # the L1 strength chosen by cross-validation


def is_extreme_change(raw: float, lc: float, *, abs_diff: float = 10.0, rel_diff: float = 4.0) -> bool:
    """alpaca-eval's warning rule: LC left [min(raw - raw/rel, raw - abs), max(raw + (100-raw)/rel, raw + abs)]."""
    too_small = lc < min(raw - raw / rel_diff, raw - abs_diff)
    too_large = lc > max(raw + (100 - raw) / rel_diff, raw + abs_diff)
    return bool(too_small or too_large)


def _continuous_log_loss(y_true, y_pred, true_prob, true_sample_weight=None):
    """-mean_k w_k [p_k log q_k + (1 - p_k) log(1 - q_k)] on the duplicated rows.

    `y_true` is the duplicate's hard label and `true_prob` that duplicate's soft label (p for the
    label-1 copy, 1 - p for the label-0 copy), so the soft target of either copy is p. Same value
    as alpaca-eval's CV score (unweighted mean of weighted terms, predictions clipped to 1e-15).
    """
    y_true = np.asarray(y_true)
    true_prob = np.asarray(true_prob, dtype=float)
    target = np.where(y_true == 1, true_prob, 1.0 - true_prob)
    q = np.clip(np.asarray(y_pred, dtype=float), 1e-15, 1 - 1e-15)
    ll = target * np.log(q) + (1 - target) * np.log(1 - q)
    if true_sample_weight is not None:
        ll = ll * np.asarray(true_sample_weight, dtype=float)
    return -float(np.mean(ll))


def _difficulty_lookup(df_gamed: pd.DataFrame) -> pd.Series:
    """instruction index -> difficulty, first occurrence per index (as alpaca-eval takes it)."""
    first = df_gamed.drop_duplicates("index")
    return pd.Series(first["instruction_difficulty"].to_numpy(float), index=first["index"].to_numpy())


def _l1_penalty_kwargs() -> dict:
    """An L1 penalty for LogisticRegressionCV on every scikit-learn the package allows (>= 1.4).

    1.8 deprecated `penalty` for `l1_ratios` and added `use_legacy_attributes`; before 1.8 the
    l1_ratios argument is ignored unless penalty="elasticnet" (it would silently fit L2). Chosen by
    the constructor's signature, not the version string.
    """
    if "use_legacy_attributes" in inspect.signature(LogisticRegressionCV).parameters:
        return {"l1_ratios": (1.0,), "use_legacy_attributes": False}
    return {"penalty": "l1"}


def fit_length_controlled_glm(
    annotations: pd.DataFrame,
    df_gamed: Optional[pd.DataFrame],
    *,
    glm_name: str = "length_controlled_v1",
    random_state: int = 123,
) -> LengthControlledFit:
    """Fits the LC GLM of one model (see the module docstring); `annotations` rows are instructions.

    The row label of `annotations` is the instruction index into `df_gamed`'s difficulty (alpaca-eval
    uses the row position; `align_to_eval_set` makes it the evaluation-set position instead).
    """
    if glm_name not in GLM_VARIANTS:
        raise ValueError(f"unknown glm_name {glm_name!r}; known: {sorted(GLM_VARIANTS)}")
    variant = GLM_VARIANTS[glm_name]
    require_columns(annotations, _ANNOTATION_FIELDS_LC)
    if variant.use_instruction_difficulty or variant.regularize_to_baseline_lambda:
        if df_gamed is None:
            raise ValueError(f"{glm_name} needs the instruction-difficulty / gamed-annotations table (df_gamed)")
        df_gamed = load_df_gamed(df_gamed)
    x, y, w, difficulty = _lc_design(annotations, df_gamed, variant)
    coef, strength = _fit_soft_label_logistic(x, y, w, n_splits=variant.n_splits, random_state=random_state)
    names = FEATURE_NAMES if variant.use_instruction_difficulty else (FEATURE_NAMES[0], FEATURE_NAMES[2])
    weights = dict(zip(names, map(float, coef)))
    weights.setdefault(FEATURE_NAMES[1], 0.0)
    # Read-out with no length difference: sigmoid(phi * d_i + theta) on every instruction.
    logits = weights[FEATURE_NAMES[1]] * difficulty + weights[FEATURE_NAMES[2]]
    predicted = 1.0 / (1.0 + np.exp(-logits))
    return LengthControlledFit(
        weights={k: weights[k] for k in FEATURE_NAMES}, predicted_preferences=predicted, C=strength
    )


def _length_feature(annotations: pd.DataFrame) -> np.ndarray:
    """tanh(std_delta_len) per row: (len(output_1) - len(output_2)) over its standard deviation."""
    source = source_name(annotations)
    for field in ("output_1", "output_2"):
        if annotations[field].isna().any():
            label = annotations.index[annotations[field].isna()][0]
            raise ValueError(f"{source}: field {field!r} is missing at {describe_row(annotations, label)}")
        require_strings(annotations, field)
    delta_len = (annotations["output_1"].str.len() - annotations["output_2"].str.len()).to_numpy(float)
    delta_std = np.std(delta_len, ddof=1) if len(annotations) > 1 else 0.0
    if not delta_std > 0:
        raise ValueError(
            f"{source}: outputs of model and baseline have identical length differences; "
            "the length feature is undefined"
        )
    return np.tanh(delta_len / delta_std)


def _lc_design(annotations: pd.DataFrame, df_gamed: Optional[pd.DataFrame], variant: GLMVariant):
    """The GLM's rows (x: [tanh(std_delta_len), difficulty, not_gamed_baseline], minus the
    difficulty column when the variant has none), soft targets y in [0, 1] and weights w: the
    model's annotated rows (weight 1) after the gamed rows (weight lambda / 2). Also returns each
    instruction's difficulty for the read-out."""
    source = source_name(annotations)
    n = len(annotations)
    tanh_len = _length_feature(annotations)
    difficulty = np.zeros(n)
    if variant.use_instruction_difficulty:
        lookup = _difficulty_lookup(df_gamed)
        missing = [label for label in annotations.index if label not in lookup.index]
        if missing:
            raise ValueError(
                f"{source}: instruction index {missing[0]} ({describe_row(annotations, missing[0])}) "
                f"has no instruction_difficulty in df_gamed ({len(missing)} missing)"
            )
        difficulty = lookup.loc[list(annotations.index)].to_numpy(float)
    x = np.stack([tanh_len, difficulty, np.ones(n)], axis=1)
    y_model = preferences(annotations).replace(0.0, 1.5).to_numpy(float) - 1.0
    y, w = y_model, np.ones(n)
    lam = variant.regularize_to_baseline_lambda
    if lam:
        g_difficulty = df_gamed["instruction_difficulty"].to_numpy(float)
        if not variant.use_instruction_difficulty:
            g_difficulty = np.zeros(len(df_gamed))
        x_gamed = np.stack(
            [np.tanh(df_gamed["std_delta_len"].to_numpy(float)), g_difficulty, np.zeros(len(df_gamed))], axis=1
        )
        # Two gamed variants share the regularisation weight, hence lambda / 2 per row.
        x = np.concatenate([x_gamed, x])
        y = np.concatenate([df_gamed["preference"].to_numpy(float), y])
        w = np.concatenate([np.full(len(df_gamed), lam / 2), w])
    if not variant.use_instruction_difficulty:
        x = x[:, [0, 2]]
    keep = ~np.isnan(y)
    if int(keep.sum()) < variant.n_splits:
        raise ValueError(f"{source}: only {int(np.sum(~np.isnan(y_model)))} annotated rows; too few to fit the GLM")
    return x[keep], y[keep], w[keep], difficulty


def _fit_soft_label_logistic(x, y, w, *, n_splits: int, random_state: int) -> tuple[np.ndarray, float]:
    """alpaca-eval's fit: each row once as a win (weight y * w) and once as a loss (weight
    (1 - y) * w); LogisticRegressionCV, L1, liblinear, no intercept, 10 Cs, GroupKFold over the
    original rows (both copies in one fold), scored by the continuous log-loss. Returns the
    coefficients and the chosen C."""
    n_keep = len(y)
    x_dup = np.concatenate([x, x])
    labels = np.concatenate([np.ones(n_keep, int), np.zeros(n_keep, int)])
    true_prob = np.concatenate([y, 1.0 - y])
    row_weight = np.concatenate([w, w])
    groups = np.concatenate([np.arange(n_keep), np.arange(n_keep)])
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_scorer(_continuous_log_loss, response_method="predict_proba", greater_is_better=False)
        scorer = scorer.set_score_request(true_prob=True, true_sample_weight=True)
        model = LogisticRegressionCV(
            Cs=10,
            solver="liblinear",
            fit_intercept=False,
            cv=GroupKFold(n_splits),
            scoring=scorer,
            random_state=random_state,
            **_l1_penalty_kwargs(),
        )
        model.fit(
            x_dup,
            labels,
            sample_weight=true_prob * row_weight,
            groups=groups,
            true_prob=true_prob,
            true_sample_weight=row_weight,
        )
    return model.coef_[0], float(np.ravel(model.C_)[0])


def length_controlled_winrate(
    annotations: Union[pd.DataFrame, Sequence[Mapping[str, Any]]],
    df_gamed: Union[pd.DataFrame, PathLike, None],
    *,
    glm_name: str = "length_controlled_v1",
    eval_instructions: Optional[Sequence[str]] = None,
    warn_extreme_changes: bool = True,
) -> dict[str, float]:
    """Raw metrics plus `length_controlled_winrate` and `lc_standard_error` for one model.

    Same inputs and keys as alpaca-eval's `get_length_controlled_winrate(annotations, ...)` with its
    `df_gamed.csv` passed explicitly: `annotations` has one row per instruction in evaluation-set
    order (`instruction, output_1, output_2, generator_1, generator_2, preference`), one
    `generator_2` (the model) and one `generator_1` (the baseline). `eval_instructions`, if given,
    aligns rows to the evaluation set by instruction text (see `align_to_eval_set`).
    """
    df = annotations if isinstance(annotations, pd.DataFrame) else pd.DataFrame.from_records(annotations)
    require_columns(df, _ANNOTATION_FIELDS_LC)
    for field in ("generator_1", "generator_2"):
        single_model(df, field)
    if eval_instructions is not None:
        df = align_to_eval_set(df, eval_instructions)
    if df_gamed is not None and not isinstance(df_gamed, pd.DataFrame):
        df_gamed = load_df_gamed(df_gamed)

    metrics = winrate_metrics(df)
    if df["generator_1"].iloc[0] == df["generator_2"].iloc[0]:
        predicted = np.full(len(df), 0.5)  # the baseline against itself, by construction
    else:
        predicted = fit_length_controlled_glm(df, df_gamed, glm_name=glm_name).predicted_preferences
    metrics["length_controlled_winrate"] = float(predicted.mean() * 100)
    metrics["lc_standard_error"] = float(pd.Series(predicted).sem() * 100)
    if warn_extreme_changes and is_extreme_change(metrics["win_rate"], metrics["length_controlled_winrate"]):
        logging.warning(
            "%s: length-controlled win rate %.1f%% is far from the raw %.1f%%; the GLM may have failed",
            source_name(df),
            metrics["length_controlled_winrate"],
            metrics["win_rate"],
        )
    return metrics


# ------------------------------------------------------------------------------------------------
# Command line: `python -m alignax.evaluate alpaca_eval ANNOTATIONS... [--df-gamed CSV]`.


def add_arguments(parser) -> None:
    parser.description = (
        "AlpacaEval 2 raw and length-controlled win rates from judge annotations "
        "(annotations.json[.gz] files, one per model)."
    )
    parser.epilog = (
        "examples:\n"
        "  python -m alignax.evaluate alpaca_eval results/*/weighted_alpaca_eval_gpt4_turbo/annotations.json\n"
        "  python -m alignax.evaluate alpaca_eval my_model/annotations.json --df-gamed df_gamed.csv "
        "--output metrics.json\n"
    )
    parser.add_argument("annotations", nargs="+", help="annotations.json or .json.gz files (one model each)")
    parser.add_argument(
        "--df-gamed",
        default=None,
        help="alpaca-eval's df_gamed.csv (gamed annotations + instruction_difficulty); "
        "without it only raw metrics are computed",
    )
    parser.add_argument("--glm", default="length_controlled_v1", choices=sorted(GLM_VARIANTS))
    parser.add_argument(
        "--eval-set",
        default=None,
        help="JSON list of eval-set records with 'instruction' (or annotations of the "
        "baseline): align rows by instruction text instead of position",
    )
    parser.add_argument("--output", default=None, help="write {model: metrics} to this JSON file")


def evaluate_files(
    paths: Sequence[PathLike],
    *,
    df_gamed: Union[PathLike, pd.DataFrame, None] = None,
    glm_name: str = "length_controlled_v1",
    eval_instructions: Optional[Sequence[str]] = None,
) -> dict[str, dict[str, float]]:
    """{model name: metrics (+ avg_length, and LC when df_gamed is given)} for annotation files."""
    results = {}
    gamed = load_df_gamed(df_gamed) if df_gamed is not None else None
    for path in paths:
        df = load_annotations(path)
        require_columns(df, ["generator_2", "preference", "output_2"])
        model = single_model(df, "generator_2")
        if "generator_1" in df.columns:
            single_model(df, "generator_1")  # one baseline: mixed baselines are not one win rate
        label = first_bad_row(df, "output_2", lambda v: v is not None and not isinstance(v, str))
        if label is not None:
            raise ValueError(
                f"{path}: field 'output_2' must be a string, got {df.loc[label, 'output_2']!r} at "
                f"{describe_row(df, label)}"
            )
        if model in results:
            raise ValueError(f"{path}: model {model!r} appears in two annotation files")
        if gamed is not None:
            metrics = length_controlled_winrate(df, gamed, glm_name=glm_name, eval_instructions=eval_instructions)
        else:
            metrics = winrate_metrics(df)
        metrics["avg_length"] = average_length(df)
        metrics["n_skipped"] = int(pd.to_numeric(df["preference"], errors="coerce").isna().sum())
        results[model] = metrics
    return results


def _read_eval_instructions(path: PathLike) -> list[str]:
    path = pathlib.Path(path)
    records = load_annotations(path)
    require_columns(records, ["instruction"])
    require_strings(records, "instruction")
    return list(records["instruction"])


def run(args) -> int:
    eval_instructions = _read_eval_instructions(args.eval_set) if args.eval_set else None
    results = evaluate_files(
        args.annotations, df_gamed=args.df_gamed, glm_name=args.glm, eval_instructions=eval_instructions
    )
    from alignax.evaluate import report  # local import: report is only needed for printing here

    print(report.markdown_table(report.leaderboard_table(results)))
    if args.output:
        pathlib.Path(args.output).write_text(json.dumps(results, indent=2, sort_keys=True))
        print(f"wrote {args.output}")
    return 0
