"""Ruler PM/FM on hand-computed cases (METHODS.md §17)."""

import math

import pytest

from alignax.evaluate import ruler


def words(n):
    return " ".join(["w"] * n)


def test_count_words_is_regex_word_tokens():
    assert ruler.count_words("Hello, world! It's 3.5 o'clock.") == 8  # Hello world It s 3 5 o clock
    assert ruler.count_words("") == 0
    assert ruler.count_words("--- ...") == 0


@pytest.mark.parametrize(
    "target, n, pm, fm",
    [
        (10, 0, False, False),  # lower bounds are exclusive
        (10, 20, True, True),  # upper bounds are inclusive
        (30, 20, False, False),
        (80, 70, False, True),  # PM (70, 90] excludes 70; FM (60, 100] includes it
        (80, 95, False, True),
        (150, 171, False, True),
        (300, 281, True, True),
        (500, 400, False, False),
        (500, 451, True, True),
        (700, 800, False, True),
        (">800", 800, False, False),
        ("[MLT:>800]", 801, True, True),
        ("more than 800", 5000, True, True),
    ],
)
def test_intervals(target, n, pm, fm):
    got = ruler.match(words(n), target)
    assert got["words"] == n and got["pm"] is pm and got["fm"] is fm


def test_scores_per_level_hand_computed():
    responses = [words(15), words(65), words(150), words(210), words(900), words(10)]
    targets = [10, 50, "150", 300, ">800", "[MLT:700]"]
    got = ruler.target_length_scores(responses, targets)
    # level 0: 15@10 pm+fm, 65@50 neither -> 50 / 50
    assert got["level_0"] == {"n": 2, "pm": 50.0, "fm": 50.0}
    # level 1: 150@150 pm+fm, 210@300 fm only -> 50 / 100
    assert got["level_1"] == {"n": 2, "pm": 50.0, "fm": 100.0}
    # level 2: 900@>800 both, 10@700 neither -> 50 / 50
    assert got["level_2"] == {"n": 2, "pm": 50.0, "fm": 50.0}
    assert got["all"]["pm"] == pytest.approx(100 * 3 / 6) and got["all"]["fm"] == pytest.approx(100 * 4 / 6)


def test_empty_level_is_nan_not_zero():
    got = ruler.target_length_scores([words(10)], [10])
    assert math.isnan(got["level_2"]["pm"]) and got["level_2"]["n"] == 0


def test_bad_input():
    with pytest.raises(ValueError, match="unknown target"):
        ruler.match("x", 100)
    with pytest.raises(ValueError, match="targets"):
        ruler.target_length_scores(["x"], [])
    with pytest.raises(TypeError):
        ruler.count_words(None)


def test_cli_prints_strict_json(tmp_path, capsys):
    import argparse
    import json

    path = tmp_path / "gen.jsonl"
    path.write_text(json.dumps({"output": words(12), "TargetLength": "10"}) + "\n")
    parser = argparse.ArgumentParser()
    ruler.add_arguments(parser)
    assert ruler.run(parser.parse_args([str(path)])) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert out["all"] == {"n": 1, "pm": 100.0, "fm": 100.0} and out["level_2"]["pm"] is None
