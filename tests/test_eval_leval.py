"""L-Eval: EM reproduces the README's gpt4-32k numbers; F1/ROUGE against independent references."""

import math

import pytest

from alignax.evaluate import leval

EXAM = "leval/Predictions/exam_eval"
NGRAM = "leval/Predictions/ngram_eval"


def _file(folder, task):
    matches = sorted(folder.glob(f"{task}.pred.jsonl*"))
    assert len(matches) == 1, (folder, task)
    return matches[0]


# README table, GPT4-32k; the README truncates (84.386 -> 84.38) rather than rounds.
@pytest.mark.parametrize(
    "task, published",
    [
        ("tpo", 84.38),
        ("quality", 82.17),
        ("gsm100", 96.00),
        ("coursera", 75.58),
        ("codeU", 25.55),
    ],
)
def test_exact_match_reproduces_gpt4_32k_readme(evaldata_dir, task, published):
    path = _file(evaldata_dir / EXAM / "gpt4-32k", task)
    score = leval.score_exam_task(leval.task_name(path), leval.read_predictions(path))
    assert math.floor(score * 100) / 100 == pytest.approx(published, abs=1e-9)


def test_em_rules_hand_computed():
    assert leval.exact_match_score("B", "B") == 1
    assert leval.exact_match_score("AC", "ABC") == 0.25  # Coursera partial credit
    assert leval.exact_match_score("D", "ABC") == 0
    assert leval.exact_match_score("18.0", "18") == 1  # numeric equality
    assert leval.exact_match_score("The Red Fox\nmore", "red fox") == 1  # substring of the prediction
    assert leval.exact_match_score("cat", "dog") == 0
    assert leval.extract_choice("The answer is (C) because") == "C"
    assert leval.extract_choice("ABD are right", multi_answer=True) == "ABD"
    assert leval.extract_choice("  ") == "None"
    assert leval.extract_choice_truth("(B) Their subconscious") == "B"
    assert leval.extract_math_answer("so 3 + 4 = 7.\nThe answer is 1,250.5 dollars") == "1250"
    assert leval.extract_math_answer("We get 12 eggs and then 18 dollars\n\n100") == "18"
    # (0.5 + 1) / 2 examples -> 62.5 and the max over references.
    assert leval.exact_match(["AC", "x"], [["ABC"], ["y", "x"]]) == pytest.approx(62.5)


def test_f1_matches_transformers_squad_metric(evaldata_dir):
    from transformers.data.metrics import squad_metrics

    path = _file(evaldata_dir / NGRAM / "turbo-16k-0613", "financial_qa")
    rows = leval.read_predictions(path)
    key = leval.prediction_key(rows[0], where="row 0")
    ours, theirs = [], []
    for row in rows:
        if leval.normalize_f1(row[key]) and leval.normalize_f1(row["gt"]):
            ours.append(leval.squad_f1_score(row[key], row["gt"]))
            theirs.append(squad_metrics.compute_f1(row["gt"], row[key]))
    assert len(ours) > 10
    assert ours == pytest.approx(theirs, abs=1e-12)
    got = leval.score_ngram_task(rows, metric="f1")["f1"]
    assert 0 < got < 100


def test_rouge_hand_computed():
    result = leval.rouge(["the cat sat"], [["the cat sat on the mat", "dog"]])
    # unigrams: 3 of 3 predicted in the reference, 3 of 6 reference -> F = 2/3
    assert result["rouge1"] == pytest.approx(100 * 2 / 3)
    # bigrams: 2 of 2 predicted, 2 of 5 reference -> F = 2 * 1 * 0.4 / 1.4
    assert result["rouge2"] == pytest.approx(100 * 0.8 / 1.4)
    assert result["rougeL"] == pytest.approx(100 * 2 / 3)  # LCS = 3 tokens
    assert result["geometric_mean"] == pytest.approx(
        (result["rouge1"] * result["rouge2"] * result["rougeL"]) ** (1 / 3)
    )


def test_rouge_on_real_predictions_is_sane(evaldata_dir):
    path = _file(evaldata_dir / NGRAM / "turbo-16k-0613", "news_summ")
    rows = leval.read_predictions(path)[:5]
    result = leval.score_ngram_task(rows)
    assert 0 < result["rouge2"] < result["rouge1"] < 100
    assert result["LEval_score"] == result["geometric_mean"]


def test_bad_input():
    with pytest.raises(ValueError, match="reference lists"):
        leval.exact_match(["a"], [])
    with pytest.raises(ValueError, match="non-empty list"):
        leval.f1(["a"], ["a"])  # a bare string is not a list of references
    with pytest.raises(KeyError, match="_pred"):
        leval.score_exam_task("tpo", [{"gt": "A", "evaluation": "exam"}])
    with pytest.raises(KeyError, match="missing field 'gt'"):
        leval.score_exam_task("tpo", [{"m_pred": "A", "evaluation": "exam"}])
    with pytest.raises(ValueError, match="metric"):
        leval.score_ngram_task([{"m_pred": "a", "gt": "b", "evaluation": "LLM"}])
