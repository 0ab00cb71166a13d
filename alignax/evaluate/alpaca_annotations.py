"""Reading and checking AlpacaEval files: judge annotations (`annotations.json[.gz]`) and the
gamed-annotations / instruction-difficulty table (`df_gamed.csv`). Every error names the file, the
field and the row (with the start of its instruction), so that a bad judge output is found at once.
The metrics on top of them are in alignax/evaluate/alpaca_eval.py.
"""

from __future__ import annotations

import gzip
import json
import pathlib
from typing import Any, Sequence, Union

import numpy as np
import pandas as pd

PathLike = Union[str, pathlib.Path]

DF_GAMED_FIELDS = ("index", "instruction_difficulty", "preference", "std_delta_len", "not_gamed_baseline")


def load_annotations(path: PathLike) -> pd.DataFrame:
    """Reads an AlpacaEval `annotations.json` (or `.json.gz`): a list of per-instruction dicts.

    The row index is the position in the file, which alpaca-eval uses as the instruction index.
    """
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            records = json.load(f)
    except (OSError, EOFError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        raise ValueError(f"{path}: cannot read AlpacaEval annotations: {e}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected a JSON list of objects (one per instruction)")
    if not records:
        raise ValueError(f"{path}: no annotations")
    df = pd.DataFrame.from_records(records)
    df.attrs["source"] = str(path)
    return df


def load_df_gamed(source: Union[PathLike, pd.DataFrame]) -> pd.DataFrame:
    """Reads the gamed-annotations / instruction-difficulty table (alpaca-eval's `df_gamed.csv`).

    Columns: `index` (instruction index), `instruction_difficulty`, `preference` (in [0, 1]),
    `std_delta_len`, `not_gamed_baseline` (False on every row); `model` is optional.
    """
    name = "df_gamed" if isinstance(source, pd.DataFrame) else str(source)
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    else:
        try:
            df = pd.read_csv(source)
        except (OSError, EOFError, ValueError) as e:  # ValueError: empty file, bad CSV, bad UTF-8
            raise ValueError(f"{name}: cannot read the df_gamed CSV: {e}") from None
    missing = [c for c in DF_GAMED_FIELDS if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; has {list(df.columns)}")
    for col in ("index", "instruction_difficulty", "std_delta_len", "preference"):
        numbers = pd.to_numeric(df[col], errors="coerce")
        bad = numbers.isna() & df[col].notna()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}: column {col!r} is not a number at row {i}: {df[col].iloc[i]!r}")
        df[col] = numbers
    for col in ("instruction_difficulty", "std_delta_len"):
        bad = df[col].isna()
        if bad.any():
            raise ValueError(f"{name}: column {col!r} has NaN at row(s) {list(np.flatnonzero(bad)[:5])}")
    pref = df["preference"].astype(float)
    bad = pref.notna() & ((pref < 0) | (pref > 1))
    if bad.any():
        raise ValueError(f"{name}: column 'preference' must lie in [0, 1]; rows {list(np.flatnonzero(bad)[:5])}")
    ngb = df["not_gamed_baseline"].astype(str).str.lower()
    if not ngb.isin(["false", "0", "0.0"]).all():
        raise ValueError(f"{name}: column 'not_gamed_baseline' must be False on every gamed row")
    return df


def source_name(df: pd.DataFrame) -> str:
    return df.attrs.get("source", "annotations")


def require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{source_name(df)}: missing field(s) {missing}; has {list(df.columns)}")


def single_model(df: pd.DataFrame, field: str) -> str:
    """The one model named in column `field`; several names (or none) are an error.

    A file mixing several `generator_2` models would otherwise be scored as one model.
    """
    require_columns(df, [field])
    label = first_bad_row(
        df, field, lambda v: not (isinstance(v, str) or v is None or (isinstance(v, float) and np.isnan(v)))
    )
    if label is not None:
        raise ValueError(
            f"{source_name(df)}: field {field!r} must be a model name, got {df.loc[label, field]!r} at "
            f"{describe_row(df, label)}"
        )
    values = list(df[field].dropna().unique())
    if len(values) != 1:
        where = ""
        if len(values) > 1:
            where = f" (first {values[1]!r} at {describe_row(df, df.index[df[field] == values[1]][0])})"
        raise ValueError(f"{source_name(df)}: field {field!r} must name exactly one model, found {values[:5]}{where}")
    return values[0]


def require_strings(df: pd.DataFrame, field: str) -> None:
    """Model outputs and instructions must be strings; `str.len()` of a number is silently NaN."""
    label = first_bad_row(df, field, lambda v: not isinstance(v, str))
    if label is not None:
        raise ValueError(
            f"{source_name(df)}: field {field!r} must be a string, got {df.loc[label, field]!r} at "
            f"{describe_row(df, label)}"
        )


def describe_row(df: pd.DataFrame, label: Any) -> str:
    text = ""
    if "instruction" in df.columns:
        text = str(df.loc[label, "instruction"])
        text = f" (instruction {text[:60]!r})"
    return f"row {label}{text}"


def first_bad_row(df: pd.DataFrame, field: str, is_bad) -> Any:
    """The label of the first row whose `field` value satisfies `is_bad`, or None."""
    bad = df[field].map(is_bad).astype(bool)
    return df.index[bad][0] if bad.any() else None


def preferences(df: pd.DataFrame) -> pd.Series:
    """Preferences as floats, 0 (legacy draw) kept; raises on values outside {0, NaN} U [1, 2].

    JSON booleans are rejected: pandas reads `true` as 1 (a baseline win) and `false` as 0 (a
    draw), so a judge that answered true/false would be scored silently and wrongly.
    """
    require_columns(df, ["preference"])
    label = first_bad_row(df, "preference", lambda v: isinstance(v, (bool, np.bool_, list, dict)))
    if label is not None:
        raise ValueError(
            f"{source_name(df)}: field 'preference' must be a number in [1, 2] (1 = baseline better, "
            f"2 = model better), got {df.loc[label, 'preference']!r} at {describe_row(df, label)}"
        )
    pref = pd.to_numeric(df["preference"], errors="coerce")
    unparsable = pref.isna() & df["preference"].notna()
    if unparsable.any():
        label = df.index[unparsable][0]
        raise ValueError(
            f"{source_name(df)}: field 'preference' is not a number at {describe_row(df, label)}: "
            f"{df.loc[label, 'preference']!r}"
        )
    pref = pref.astype(float)
    invalid = pref.notna() & (pref != 0) & ((pref < 1) | (pref > 2))
    if invalid.any():
        label = df.index[invalid][0]
        raise ValueError(
            f"{source_name(df)}: preference must be in [1, 2] (or 0 / 1.5 for a draw), got "
            f"{pref[label]} at {describe_row(df, label)}"
        )
    return pref
