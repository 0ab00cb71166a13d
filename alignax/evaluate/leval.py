"""L-Eval automatic metrics: exact match (with its task rules), SQuAD F1 and ROUGE.

Restated from OpenLMLab/LEval `Evaluation/auto_eval.py`, `em.py`, `f1.py`, `rouge.py`
(protocol in docs/evaluation.md). Scores are 100 x the mean over examples of the max over references.

Exact match (em.py): normalize = drop punctuation, drop articles, collapse whitespace (no
lower-casing). If the normalized ground truth is only A-D letters (multiple choice): 1 if equal,
0.25 if the prediction's letters are a subset of the gt's (Coursera partial credit), else 0.
Otherwise 1 if both parse as equal floats, else 1 if the gt (lower-cased, spaces removed) is a
substring of the whole prediction, all lines (lower-cased, spaces removed). Upstream HEAD em.py
checks the whole prediction; an older revision used only its first line longer than one character.
Task pre-processing (auto_eval.py):
  tpo / quality / coursera: prediction -> its first A-D letter (Coursera collects several),
    "None" for an empty response; gt -> A-D letters of its first whitespace token.
  gsm100: "The answer is X" -> X, else the last token with a digit in the first paragraph;
    keep its digits, stop at the first '.'. Applied to both prediction and gt.
  codeU: code-output normalization, the last gt_len + 3 tokens of the prediction.
  topic_retrieval_longchat: mean of the EM of the 1st/2nd/3rd topic questions (row i mod 3).
  sci_fi: mean of the loyalty and fact EM.
SQuAD F1 (f1.py): tokens of lower-cased text without punctuation/articles; F1 of the bag overlap.
ROUGE (rouge.py): `rouge_score` rouge1/2/L/Lsum F-measure x 100, no stemmer, on text split into
sentences (nltk punkt) joined by newlines; LEval_score = (R1 x R2 x RL)^(1/3).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import string
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from alignax import files

MULTIPLE_CHOICE_TASKS = ("coursera", "quality", "tpo")
PUNCTUATION = set(string.punctuation)
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def _remove_articles(text: str) -> str:
    return re.sub(r"\b(a|an|the)\b", " ", text)


def _remove_punctuation(text: str) -> str:
    return "".join(ch for ch in text if ch not in PUNCTUATION)


def normalize_em(text: str) -> str:
    """em.py's normalizer: no punctuation, no articles, single spaces; case is KEPT."""
    return " ".join(_remove_articles(_remove_punctuation(text)).split())


def normalize_f1(text: str) -> str:
    """SQuAD normalizer (f1.py): lower-case, no punctuation, no articles, single spaces."""
    return " ".join(_remove_articles(_remove_punctuation(text.lower())).split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """em.py's per-pair score: 1, 0.25 (multiple-choice subset) or 0."""
    gt_normalized = normalize_em(ground_truth)
    is_multiple_choice = all(ch in "ABCD" for ch in gt_normalized)
    if is_multiple_choice:
        pred_normalized = normalize_em(prediction)
        if pred_normalized == gt_normalized:
            return 1.0
        # Why 0.25: Coursera questions have several right options; naming some of them only
        # earns partial credit. (An empty prediction is a subset too, as upstream.)
        if set(pred_normalized).issubset(set(gt_normalized)):
            return 0.25
        return 0.0
    try:
        return float(float(prediction) == float(ground_truth))
    except ValueError:
        pass
    # Whole prediction, every line: upstream em.py at HEAD (OpenLMLab/LEval c7cf705) dropped the older
    # "first line longer than one character" cut, which missed answers given after a preamble line.
    return float(ground_truth.lower().replace(" ", "") in prediction.lower().replace(" ", ""))


def squad_f1_score(prediction: str, ground_truth: str) -> float:
    """Token F1 of the bag-of-words overlap after SQuAD normalization."""
    prediction_tokens = normalize_f1(prediction).split()
    truth_tokens = normalize_f1(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def _max_over_references(
    metric: Callable[[str, str], float], predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> float:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("no predictions to score")
    total = 0.0
    for index, (prediction, truths) in enumerate(zip(predictions, references)):
        if not isinstance(prediction, str):
            raise TypeError(f"prediction {index} is {type(prediction).__name__}, not str")
        if isinstance(truths, str) or not truths:
            raise ValueError(f"references[{index}] must be a non-empty list of strings, got {truths!r}")
        total += max(metric(prediction, truth) for truth in truths)
    return 100.0 * total / len(predictions)


def exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """100 x mean over examples of max over references of `exact_match_score`."""
    return _max_over_references(exact_match_score, predictions, references)


def f1(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """100 x mean over examples of max over references of `squad_f1_score`."""
    return _max_over_references(squad_f1_score, predictions, references)


_SENTENCE_SPLITTER = None


def split_sentences(text: str) -> str:
    """Sentences joined by newlines (rougeLsum's unit), with nltk's English punkt model.

    Falls back to an untrained `PunktSentenceTokenizer` when the punkt data is not installed
    (it cannot be downloaded here); only rougeLsum depends on the split, not LEval_score.
    """
    global _SENTENCE_SPLITTER
    if _SENTENCE_SPLITTER is None:
        import nltk

        try:
            nltk.sent_tokenize("Probe sentence.")
            _SENTENCE_SPLITTER = nltk.sent_tokenize
        except LookupError:
            warnings.warn("nltk punkt data not installed: rougeLsum uses an untrained Punkt splitter", stacklevel=2)
            _SENTENCE_SPLITTER = nltk.tokenize.punkt.PunktSentenceTokenizer().tokenize
    return "\n".join(_SENTENCE_SPLITTER(text))


def rouge(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F x 100 (max over references, mean over examples) and geometric_mean."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=False)
    sums = dict.fromkeys(ROUGE_KEYS, 0.0)
    for index, (prediction, truths) in enumerate(zip(predictions, references)):
        if isinstance(truths, str) or not truths:
            raise ValueError(f"references[{index}] must be a non-empty list of strings")
        prediction = split_sentences(prediction)
        scores = [scorer.score(split_sentences(truth), prediction) for truth in truths]
        for key in ROUGE_KEYS:
            sums[key] += max(s[key].fmeasure for s in scores) * 100
    result = {key: value / len(predictions) for key, value in sums.items()}
    result["geometric_mean"] = (result["rouge1"] * result["rouge2"] * result["rougeL"]) ** (1 / 3)
    return result


# ------------------------------------------------------------------ task-specific extraction
def extract_choice(response: str, *, multi_answer: bool = False) -> str:
    """auto_eval.process_output_mc: the chosen option letter(s) of a multiple-choice answer."""
    if len(response.strip()) == 0:
        return "None"
    if response in "ABCD":
        return response
    if not multi_answer:
        for ch in response:
            if ch in "ABCD":
                return ch
    # Several letters at the very start ("ABD ...") are a multi-answer choice.
    leading = ""
    for ch in response:
        if ch in "ABCD":
            leading += ch
            response = response[1:]
        else:
            break
    if len(leading) > 1:
        return "".join(sorted(set(leading)))
    response = response.split("Question")[0]
    options = re.findall(r"\s*[A-Z](?=[\s.)])", response)
    letters = re.sub(r"[^A-D]", "", leading + " ".join(options).strip())
    letters = "".join(sorted(set(letters)))
    if not letters:
        found = False
        for ch in response:
            if ch in "ABCD":
                letters += ch
                found = True
            elif found:
                break
    return letters or "A"  # upstream's random guess when nothing is found


def extract_choice_truth(ground_truth: str) -> str:
    """auto_eval.process_gt_mc: A-D letters of the first token ("(B) text" -> "B")."""
    tokens = ground_truth.split()
    if not tokens:
        raise ValueError("empty multiple-choice ground truth")
    return re.sub(r"[^A-D]", "", tokens[0]) or "A"


def extract_math_answer(response: str) -> str:
    """auto_eval.process_math: the number after "The answer is", else the last token with a
    digit in the first paragraph; its digits only, stopping at the first '.'."""
    match = re.search(r"The answer is (\S+)", response)
    if match:
        token = match.group(1)
    else:
        token = ""
        for word in response.split("\n\n")[0].split(" ")[::-1]:
            if any(ch.isdigit() for ch in word):
                token = word
                break
    digits = ""
    for ch in token:
        if ch.isdigit():
            digits += ch
        if ch == ".":
            break
    return digits


def normalize_code_output(text: str) -> str:
    """auto_eval.process_gt_code."""
    text = re.sub(r"\s+", " ", text)
    for old, new in ((",", ""), ("'", ""), ("\\", ""), (".0", ""), ("] [", "]["), ("[ [", "[["), ("] ]", "]]")):
        text = text.replace(old, new)
    return text


def extract_code_output(response: str, ground_truth: str) -> str:
    """auto_eval.process_output_code: a window of gt_len + 3 tokens of the normalized answer."""
    window = len(ground_truth.split()) + 3
    response = normalize_code_output(response)
    for phrase in ("will be", "of the code", "is", "would be", "the value of", "the result of", "printed"):
        response = response.replace(phrase, "")
    if "the final output" in response:
        return " ".join(re.split(r"\s+", response.split("the final output")[-1])[:window])
    return " ".join(re.split(r"\s+", response)[-window:])


def split_judge_truth(text: str) -> list[str]:
    """auto_eval.process_gt_judge: sci_fi "loyalty [fact: x]" -> [loyalty, fact] (lower-case)."""
    parts = text.lower().split("[fact:")
    if len(parts) < 2:
        raise ValueError(f"sci_fi answer lacks '[fact:': {text[:80]!r}")
    return [parts[0].strip(), parts[1][:-1].strip()]


def extract_judge_answer(response: str) -> list[str]:
    """auto_eval.process_output_judge: the first true/false word of each part, or "<error>"."""
    lowered = response.lower()
    parts = lowered.split("[fact:")
    loyalty, fact = parts[0], (parts[1][:-1] if len(parts) > 1 else "")
    answers = []
    for part in (loyalty, fact):
        answer = "<error>"
        for word in part.split():
            if "true" in word:
                answer = "true"
                break
            if "false" in word:
                answer = "false"
                break
        answers.append(answer)
    return answers


def prediction_key(row: dict[str, Any], *, where: str) -> str:
    """The `<model>_pred` field of an L-Eval prediction row."""
    for key in row:
        if "_pred" in key:
            return key
    raise KeyError(f"{where}: no '<model>_pred' field (keys: {sorted(row)})")


def score_exam_task(task: str, rows: Sequence[dict[str, Any]]) -> float:
    """EM of one closed-ended L-Eval task from its `*.pred.jsonl` rows, with the task's rules."""
    if not rows:
        raise ValueError(f"{task}: no rows")
    key = prediction_key(rows[0], where=f"{task} row 0")
    predictions: list = []
    references: list = []
    if task.startswith("topic_retrieval"):
        predictions, references = [[], [], []], [[], [], []]
    elif task == "sci_fi":
        predictions, references = [[], []], [[], []]
    for i, row in enumerate(rows):
        where = f"{task} row {i}"
        for field in ("gt", key, "evaluation"):
            if field not in row:
                raise KeyError(f"{where}: missing field {field!r}")
        if row["evaluation"] not in ("exam", "f1", "rouge"):
            continue  # LLM-judged rows are not scored automatically (as upstream)
        prediction, truth = row[key], row["gt"]
        if not isinstance(prediction, str):
            raise TypeError(f"{where}: prediction is {type(prediction).__name__}, not str")
        if task in MULTIPLE_CHOICE_TASKS:
            references.append([extract_choice_truth(truth)])
            predictions.append(extract_choice(prediction, multi_answer=task == "coursera"))
        elif task.startswith("gsm"):
            references.append([extract_math_answer(truth)])
            predictions.append(extract_math_answer(prediction))
        elif task == "codeU":
            references.append([normalize_code_output(truth)])
            predictions.append(extract_code_output(prediction, truth))
        elif task.startswith("topic_retrieval"):
            references[i % 3].append([truth])
            predictions[i % 3].append(prediction)
        elif task == "sci_fi":
            loyalty, fact = split_judge_truth(truth)
            references[0].append([loyalty])
            references[1].append([fact])
            loyalty_pred, fact_pred = extract_judge_answer(prediction)
            predictions[0].append(loyalty_pred)
            predictions[1].append(fact_pred)
        else:
            references.append([truth])
            predictions.append(prediction)
    if task.startswith("topic_retrieval") or task == "sci_fi":
        parts = [exact_match(p, r) for p, r in zip(predictions, references)]
        return sum(parts) / len(parts)
    return exact_match(predictions, references)


def score_ngram_task(rows: Sequence[dict[str, Any]], *, metric: str | None = None) -> dict[str, float]:
    """F1 or ROUGE of an open-ended task; `metric` defaults to the rows' `evaluation` field."""
    if not rows:
        raise ValueError("no rows")
    key = prediction_key(rows[0], where="row 0")
    metric = metric or rows[0].get("evaluation")
    predictions = [row[key] for row in rows]
    references = [[row["gt"]] for row in rows]
    if metric == "f1":
        return {"f1": f1(predictions, references), "LEval_score": f1(predictions, references)}
    if metric == "rouge":
        result = rouge(predictions, references)
        return {**result, "LEval_score": result["geometric_mean"]}
    raise ValueError(f"metric must be 'f1' or 'rouge', got {metric!r}")


def read_predictions(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """Rows of an L-Eval `*.pred.jsonl` (or `.jsonl.gz`) file; bad lines name file and line."""
    return [record for _, record in files.read_jsonl_records(path)]


def task_name(path: str | pathlib.Path) -> str:
    """`.../tpo.pred.jsonl.gz` -> "tpo"."""
    return pathlib.Path(path).name.split(".pred.")[0].split(".")[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred_files", nargs="+", help="L-Eval *.pred.jsonl[.gz] files")


def run(args: argparse.Namespace) -> int:
    for path in args.pred_files:
        rows = read_predictions(path)
        task = task_name(path)
        evaluation = rows[0].get("evaluation") if rows else None
        if evaluation == "exam":
            result: dict[str, float] = {"exact_match": score_exam_task(task, rows)}
        else:
            result = score_ngram_task(rows)
        if any(isinstance(v, float) and math.isnan(v) for v in result.values()):
            raise ValueError(f"{path}: NaN metric {result}")
        print(json.dumps({"file": str(path), "task": task, **result}))
    return 0
