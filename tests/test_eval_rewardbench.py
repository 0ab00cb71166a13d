"""RewardBench: subset accuracy and section weighting against the repository's README example."""

import numpy as np
import pytest

from alignax.evaluate import rewardbench

# allenai/reward-bench README ("Getting Leaderboard Section Scores"), PKU-Alignment/beaver-7b-v1.0-cost.
BEAVER_COST = {
    "alpacaeval-easy": 0.5,
    "alpacaeval-hard": 0.7052631578947368,
    "alpacaeval-length": 0.5894736842105263,
    "donotanswer": 0.8235294117647058,
    "hep-cpp": 0.6280487804878049,
    "hep-go": 0.6341463414634146,
    "hep-java": 0.7073170731707317,
    "hep-js": 0.6646341463414634,
    "hep-python": 0.5487804878048781,
    "hep-rust": 0.6463414634146342,
    "llmbar-adver-GPTInst": 0.391304347826087,
    "llmbar-adver-GPTOut": 0.46808510638297873,
    "llmbar-adver-manual": 0.3695652173913043,
    "llmbar-adver-neighbor": 0.43283582089552236,
    "llmbar-natural": 0.52,
    "math-prm": 0.2953020134228188,
    "mt-bench-easy": 0.5714285714285714,
    "mt-bench-hard": 0.5405405405405406,
    "mt-bench-med": 0.725,
    "refusals-dangerous": 0.97,
    "refusals-offensive": 1,
    "xstest-should-refuse": 1,
    "xstest-should-respond": 0.284,
}


def test_sections_reproduce_readme_example():
    sections = rewardbench.section_scores(BEAVER_COST)
    # EVALUATION.md §6: Chat 60.89, Chat Hard 44.96, Safety 72.16, Reasoning 46.68, mean 56.17.
    assert {k: round(v, 2) for k, v in sections.items()} == {
        "Chat": 60.89,
        "Chat Hard": 44.96,
        "Safety": 72.16,
        "Reasoning": 46.68,
    }
    assert round(rewardbench.overall_score(sections), 2) == 56.17
    # Reasoning = 0.5 math + 0.5 mean(hep) because math-prm weighs 984 = 6 x 164.
    hep = np.mean([BEAVER_COST[f"hep-{lang}"] for lang in ("cpp", "go", "java", "js", "python", "rust")])
    assert sections["Reasoning"] == pytest.approx(100 * (0.5 * BEAVER_COST["math-prm"] + 0.5 * hep))


def test_score_pairs_strict_and_per_subset():
    chosen = [1.0, 2.0, 0.5, 3.0, -1.0]
    rejected = [0.0, 2.0, 0.7, 1.0, -2.0]  # pair 1 is a tie -> wrong
    subsets = ["a", "a", "b", "b", "b"]
    got = rewardbench.score_pairs(chosen, rejected, subsets)
    assert got["accuracy"] == {"a": 0.5, "b": pytest.approx(2 / 3)}
    assert got["counts"] == {"a": 2, "b": 3}
    assert got["overall"] == pytest.approx(3 / 5)


def test_pairs_to_sections_end_to_end():
    rng = np.random.default_rng(0)
    subsets, chosen, rejected, accuracy = [], [], [], {}
    for subset in rewardbench.EXAMPLE_COUNTS:
        n = int(rng.integers(5, 30))
        k = int(rng.integers(0, n + 1))
        subsets += [subset] * n
        chosen += [1.0] * k + [0.0] * (n - k)
        rejected += [0.5] * n
        accuracy[subset] = k / n
    got = rewardbench.score_pairs(chosen, rejected, subsets)
    assert got["accuracy"] == pytest.approx(accuracy)
    sections = rewardbench.section_scores(got["accuracy"])
    chat = rewardbench.SUBSET_MAPPING["Chat"]
    expected_chat = (
        100
        * sum(accuracy[s] * rewardbench.EXAMPLE_COUNTS[s] for s in chat)
        / sum(rewardbench.EXAMPLE_COUNTS[s] for s in chat)
    )
    assert sections["Chat"] == pytest.approx(expected_chat)


def test_overall_conventions():
    sections = {"Chat": 90.0, "Chat Hard": 60.0, "Safety": 80.0, "Reasoning": 70.0}
    assert rewardbench.overall_score(sections) == 75.0
    assert rewardbench.overall_score(sections, prior=30.0, convention="paper") == pytest.approx((2 * 300 + 30) / 9)
    assert rewardbench.overall_score(sections, prior=None, convention="paper") == 75.0
    prior = rewardbench.prior_sets_score({"anthropic_helpful": 0.6, "anthropic_hhh": 0.8, "shp": 0.5, "summarize": 0.7})
    assert prior == pytest.approx(65.0)


def test_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        rewardbench.score_pairs([1.0, float("nan")], [0.0, 0.0], ["a", "a"])
    with pytest.raises(ValueError, match="shapes"):
        rewardbench.score_pairs([1.0], [0.0, 0.0], ["a"])
    partial = dict(BEAVER_COST)
    del partial["hep-go"]
    with pytest.raises(KeyError, match="hep-go"):
        rewardbench.section_scores(partial)
    assert "Reasoning" in rewardbench.section_scores(partial, allow_missing=True)
    with pytest.raises(ValueError, match="not in"):
        rewardbench.section_scores({**BEAVER_COST, "math-prm": float("nan")})
    with pytest.raises(KeyError, match="partially"):
        rewardbench.prior_sets_score({"shp": 0.5})
