"""IFEval checkers, strict/loose scoring, prompt templates and the preference oracle (alignax/evaluate/ifeval).

Expected verdicts are worked out by hand from the rules of google-research/instruction_following_eval
`instructions.py` (Zhou et al., 2023), never produced by the code under test.
"""

import itertools

import pytest

from alignax.evaluate import ifeval
from alignax.evaluate.ifeval import text

LESS, AT_LEAST = "less than", "at least"

# (instruction id, kwargs, response, expected strict verdict)
CASES = [
    # keywords
    ("keywords:existence", {"keywords": ["river", "Garden"]}, "The RIVER runs past my gardens.", True),
    ("keywords:existence", {"keywords": ["river", "garden"]}, "The river runs past the house.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["garden"]}, "Many gardens bloom here.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["garden", "tree"]}, "A Garden blooms.", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": AT_LEAST}, "A cat in a catalog.", True),
    ("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": AT_LEAST}, "Cat and cat.", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": LESS}, "Cat and cat.", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": LESS}, "Cat and cat.", True),
    ("keywords:letter_frequency", {"letter": "A", "let_frequency": 3, "let_relation": AT_LEAST}, "Banana", True),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 3, "let_relation": LESS}, "bAnana", False),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 4, "let_relation": LESS}, "Banana", True),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 4, "let_relation": AT_LEAST}, "Banana", False),
    (
        "keywords:key_sentences",
        {"key_sentences": ["I love tea."], "num_sentences": 1},
        "Hello there. I love tea.",
        True,
    ),
    ("keywords:key_sentences", {"key_sentences": ["I love tea."], "num_sentences": 1}, "I love tea a lot.", False),
    # length constraints: "less than" strict, "at least" inclusive
    ("length_constraints:number_words", {"num_words": 5, "relation": LESS}, "one two three four", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": LESS}, "one two three four five", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": AT_LEAST}, "one two three four five", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": AT_LEAST}, "one two three four", False),
    ("length_constraints:number_words", {"num_words": 4, "relation": AT_LEAST}, "don't stop-now", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": AT_LEAST}, "Hi there. How? Fine!", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LESS}, "Hi there. How? Fine!", False),
    ("length_constraints:number_sentences", {"num_sentences": 4, "relation": LESS}, "Hi there. How? Fine!", True),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 2, "relation": AT_LEAST},
        "Mr. Smith met Dr. Jones.",
        False,
    ),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "A\n***\nB\n***\nC", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "***\nA\n***\nB\n***\nC\n***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "A\n***\nB", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n***\n***\nC", False),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "river"},
        "Intro here.\n\nRiver, wide and slow.",
        True,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "river"},
        'Intro here.\n\n"River" he said.',
        True,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "river"},
        "Intro here.\n\nThe river.",
        False,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "river"},
        "Intro.\n\nRiver here.\n\nOutro.",
        False,
    ),
    # detectable content
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name].", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello.\nP.S. bye", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello.\np. s. bye", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello. PS bye", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi\nP.P.S. more", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi\nP.S. more", False),
    (
        "detectable_content:rephrase_paragraph",
        {"original_paragraph": "the cat sat on the mat", "low": 2, "high": 3},
        "The dog sat.",
        True,
    ),
    (
        "detectable_content:rephrase_paragraph",
        {"original_paragraph": "the cat sat on the mat", "low": 2, "high": 3},
        "The cat sat on the mat.",
        False,
    ),
    # detectable format
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "**Bold**\n* one\n- two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n- two\n  - three", False),
    ("detectable_format:constrained_response", {}, "I thought about it. My answer is maybe.", True),
    ("detectable_format:constrained_response", {}, "Yes.", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "This is *one* and **two**.", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "Only *one* here, * * empty.", False),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\nfoo\nSection 2\nbar",
        True,
    ),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2}, "Section 1\nfoo", False),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "SECTION 1\nfoo\nSECTION 2\nbar",
        False,
    ),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, " [1, 2] ", True),
    ("detectable_format:json_format", {}, 'Here it is: {"a": 1}', False),
    ("detectable_format:title", {}, "<<Poem of Joy>>\nbody", True),
    ("detectable_format:title", {}, "<<  >> and <Not a title>", False),
    # combination
    ("combination:two_responses", {}, "Answer one.\n******\nAnswer two.", True),
    ("combination:two_responses", {}, "******\nAnswer one.\n******\nAnswer two.", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:two_responses", {}, "A\n******\n******\nB", False),
    (
        "combination:repeat_prompt",
        {"prompt_to_repeat": "Write a poem about cats."},
        "write a poem about cats. Whiskers in the sun.",
        True,
    ),
    (
        "combination:repeat_prompt",
        {"prompt_to_repeat": "Write a poem about cats."},
        "Sure! Write a poem about cats.",
        False,
    ),
    # start / end
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, 'Blah blah. any other questions?"', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    ("startend:quotation", {}, '  "Hello world"\n', True),
    ("startend:quotation", {}, 'Hello "world"', False),
    ("startend:quotation", {}, '"', False),
    ("multi-turn:constrained_start", {"starter": "My answer is"}, "Well.\n  My answer is yes", True),
    ("multi-turn:constrained_start", {"starter": "My answer is"}, "Well, my answer is yes", False),
    # change case, punctuation
    ("change_case:english_lowercase", {}, "all lowercase here, 42 times.", True),
    ("change_case:english_lowercase", {}, "Not lowercase.", False),
    ("change_case:english_lowercase", {}, "всё строчными буквами", False),
    ("change_case:english_capital", {}, "ALL CAPS HERE, 42 TIMES.", True),
    ("change_case:english_capital", {}, "ALL CAPS here.", False),
    ("change_case:english_capital", {}, "ВСЁ ЗАГЛАВНЫМИ", False),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 3, "capital_relation": AT_LEAST},
        "I love NYC-STYLE PIZZA",
        True,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 3, "capital_relation": LESS},
        "I love NYC PIZZA",
        False,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 4, "capital_relation": LESS},
        "I love NYC PIZZA",
        True,
    ),
    # a contraction is two Treebank tokens: DO + N'T
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": AT_LEAST}, "DON'T STOP", True),
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "Yes, commas.", False),
]

REQUIRED_IDS = [
    "length_constraints:number_words",
    "length_constraints:number_sentences",
    "length_constraints:number_paragraphs",
    "length_constraints:nth_paragraph_first_word",
    "keywords:existence",
    "keywords:forbidden_words",
    "keywords:frequency",
    "keywords:letter_frequency",
    "detectable_format:json_format",
    "detectable_format:number_bullet_lists",
    "detectable_format:multiple_sections",
    "detectable_content:number_placeholders",
    "detectable_format:title",
    "change_case:english_lowercase",
    "change_case:english_capital",
    "change_case:capital_word_frequency",
    "startend:end_checker",
    "startend:quotation",
    "detectable_content:postscript",
    "punctuation:no_comma",
    "detectable_format:number_highlighted_sections",
    "detectable_format:constrained_response",
    "combination:repeat_prompt",
    "combination:two_responses",
]


@pytest.mark.parametrize("instruction_id, kwargs, response, expected", CASES)
def test_checker_verdict(instruction_id, kwargs, response, expected):
    assert ifeval.check(instruction_id, kwargs, response) is expected


def test_every_checker_has_a_passing_and_a_failing_case():
    verdicts = {(instruction_id, expected) for instruction_id, _, _, expected in CASES}
    for instruction_id in ifeval.REGISTRY:
        assert (instruction_id, True) in verdicts and (instruction_id, False) in verdicts, instruction_id


def test_registry_covers_the_required_ids():
    assert set(REQUIRED_IDS) <= set(ifeval.REGISTRY)
    assert len(ifeval.REGISTRY) >= 25
    assert "language:response_language" not in ifeval.REGISTRY  # needs langdetect, not a dependency


@pytest.mark.parametrize(
    "sentence_text, expected",
    [
        ("Mr. Smith met Dr. Jones.", 1),
        ("It costs 3.5 dollars. Cheap!", 2),
        ("Visit example.com today. Ok.", 2),
        ("The U.S.A. is big. Yes.", 2),
        ("Wow!! Really?", 2),
        ("no punctuation at all", 1),
    ],
)
def test_sentence_count(sentence_text, expected):
    assert text.count_sentences(sentence_text) == expected


def test_word_count_matches_regexp_tokenizer():
    assert text.count_words("It's 3:45 -- time_to go!") == 6  # It, s, 3, 45, time_to, go


def test_empty_response_follows_nothing():
    assert ifeval.check("punctuation:no_comma", {}, "  \n ") is False
    assert ifeval.check_loose("punctuation:no_comma", {}, "  \n ") is False


# ---------------------------------------------------------------- kwargs validation


@pytest.mark.parametrize(
    "instruction_id, kwargs, named",
    [
        ("keywords:no_such_thing", {}, "keywords:no_such_thing"),
        ("length_constraints:number_words", {"num_words": 5, "relation": "at most"}, "relation"),
        ("length_constraints:number_words", {"num_words": 5}, "relation"),
        ("length_constraints:number_words", {"num_words": "5", "relation": LESS}, "num_words"),
        ("length_constraints:number_words", {"num_words": 5, "relation": LESS, "colour": "red"}, "colour"),
        ("keywords:letter_frequency", {"letter": "ab", "let_frequency": 1, "let_relation": LESS}, "letter"),
        ("keywords:existence", {"keywords": "river"}, "keywords"),
        ("combination:repeat_prompt", {}, "prompt_to_repeat"),
    ],
)
def test_bad_instruction_or_kwargs_raise_naming_them(instruction_id, kwargs, named):
    with pytest.raises(ValueError, match=named):
        ifeval.check(instruction_id, kwargs, "some response")


def test_none_valued_keys_are_ignored_as_in_the_released_records():
    kwargs = {"num_words": 3, "relation": AT_LEAST, "keyword": None, "num_bullets": None}
    assert ifeval.check("length_constraints:number_words", kwargs, "one two three") is True
    assert ifeval.check("punctuation:no_comma", None, "fine") is True


def test_repeat_prompt_falls_back_to_the_prompt():
    assert ifeval.check("combination:repeat_prompt", {}, "Tell me a joke. Why did...", prompt="Tell me a joke.")
    assert not ifeval.check("combination:repeat_prompt", {}, "Here is a joke.", prompt="Tell me a joke.")


# ---------------------------------------------------------------- loose vs strict


@pytest.mark.parametrize(
    "instruction_id, kwargs, response",
    [
        ("change_case:english_lowercase", {}, "Sure, here is my answer:\nall lowercase text here"),
        (
            "startend:end_checker",
            {"end_phrase": "Any other questions?"},
            "Done. Any other questions?\nThanks for reading",
        ),
        ("startend:quotation", {}, '**"Hello world"**'),
        ("detectable_format:json_format", {}, 'Here is the JSON:\n{"a": 1}\nHope this helps'),
    ],
)
def test_loose_accepts_what_strict_rejects(instruction_id, kwargs, response):
    assert ifeval.check(instruction_id, kwargs, response) is False
    assert ifeval.check_loose(instruction_id, kwargs, response) is True


def test_loose_still_rejects_a_real_violation():
    assert ifeval.check_loose("punctuation:no_comma", {}, "First line\nmiddle, with comma\nlast line") is False


def test_loose_variants_are_the_eight_of_ifeval():
    variants = ifeval.loose_variants("a*\nb*\nc*")
    assert variants == ["a*\nb*\nc*", "b*\nc*", "a*\nb*", "b*", "a\nb\nc", "b\nc", "a\nb", "b"]


# ---------------------------------------------------------------- accuracies


def _record(ids, kwargs, response, prompt="p"):
    return {"instruction_id_list": ids, "kwargs": kwargs, "prompt": prompt, "response": response}


def test_prompt_level_and_instruction_level_accuracy_by_hand():
    records = [
        # strict: both followed; loose: both followed
        _record(
            ["punctuation:no_comma", "length_constraints:number_words"],
            [{}, {"num_words": 5, "relation": LESS}],
            "one two three",
        ),
        # strict: comma and capital S in the preamble -> neither; loose (first line removed): both
        _record(["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}], "Sure, here:\nhello there"),
        # neither mode finds a title
        _record(["detectable_format:title"], [{}], "no title here"),
    ]
    result = ifeval.score(records)
    assert result["num_prompts"] == 3 and result["num_instructions"] == 5
    assert result["prompt_level_strict_acc"] == pytest.approx(1 / 3)
    assert result["inst_level_strict_acc"] == pytest.approx(2 / 5)
    assert result["prompt_level_loose_acc"] == pytest.approx(2 / 3)
    assert result["inst_level_loose_acc"] == pytest.approx(4 / 5)
    assert result["per_instruction"]["punctuation:no_comma"] == {"count": 2, "strict_acc": 0.5, "loose_acc": 1.0}


def test_score_rejects_mismatched_kwargs_and_empty_input():
    with pytest.raises(ValueError, match="kwargs"):
        ifeval.score([_record(["punctuation:no_comma", "detectable_format:title"], [{}], "x")])
    with pytest.raises(ValueError):
        ifeval.score([])


# ---------------------------------------------------------------- prompt templates


def test_make_prompts_is_deterministic_per_seed_and_varies_across_seeds():
    assert ifeval.make_prompts(40, seed=3) == ifeval.make_prompts(40, seed=3)
    first, second = ifeval.make_prompts(40, seed=3), ifeval.make_prompts(40, seed=4)
    assert [r["prompt"] for r in first] != [r["prompt"] for r in second]


def test_make_prompts_yields_several_hundred_distinct_records_in_ifeval_format():
    records = ifeval.make_prompts(600, seed=0)
    assert len({record["prompt"] for record in records}) == 600
    assert [record["key"] for record in records] == list(range(600))
    for record in records:
        assert set(record) == {"key", "prompt", "instruction_id_list", "kwargs"}
        assert 1 <= len(record["instruction_id_list"]) <= 3
        assert len(record["kwargs"]) == len(record["instruction_id_list"])
        assert len(set(record["instruction_id_list"])) == len(record["instruction_id_list"])
    assert {len(record["instruction_id_list"]) for record in records} == {1, 2, 3}


def test_every_generated_kwargs_is_accepted_by_check():
    for record in ifeval.make_prompts(300, seed=11):
        for instruction_id, kwargs in zip(record["instruction_id_list"], record["kwargs"]):
            assert ifeval.check(instruction_id, kwargs, "A response.", prompt=record["prompt"]) in (True, False)


# Pairs IFEval's INSTRUCTION_CONFLICTS forbids (and two it misses), listed by hand.
FORBIDDEN_PAIRS = [
    ("change_case:english_lowercase", "change_case:english_capital"),
    ("detectable_format:json_format", "punctuation:no_comma"),
    ("detectable_format:constrained_response", "keywords:existence"),
    ("startend:quotation", "detectable_format:title"),
    ("length_constraints:number_paragraphs", "length_constraints:nth_paragraph_first_word"),
    ("combination:two_responses", "startend:end_checker"),
    ("combination:repeat_prompt", "punctuation:no_comma"),
    ("change_case:english_lowercase", "detectable_format:multiple_sections"),
]


def test_generated_combinations_avoid_conflicts():
    for record in ifeval.make_prompts(600, seed=5):
        for pair in itertools.permutations(record["instruction_id_list"], 2):
            assert pair not in FORBIDDEN_PAIRS, record


def test_generated_repeat_prompt_repeats_the_request_before_the_repeat_sentence():
    records = [r for r in ifeval.make_prompts(600, seed=2) if "combination:repeat_prompt" in r["instruction_id_list"]]
    assert records
    for record in records:
        assert record["instruction_id_list"][-1] == "combination:repeat_prompt"
        to_repeat = record["kwargs"][-1]["prompt_to_repeat"]
        assert record["prompt"].startswith(to_repeat) and "repeat the request" not in to_repeat
        answer = to_repeat + "\nHere is my answer."
        assert ifeval.check("combination:repeat_prompt", record["kwargs"][-1], answer)


def test_generated_prompt_can_be_followed():
    record = {
        "prompt": "Write a poem about glaciers.",
        "instruction_id_list": ["detectable_format:title", "punctuation:no_comma", "keywords:frequency"],
        "kwargs": [{}, {}, {"keyword": "ice", "frequency": 2, "relation": AT_LEAST}],
    }
    assert ifeval.num_followed(record, "<<Cold Giants>>\nIce on ice and more ice") == 3


# ---------------------------------------------------------------- preference oracle


def test_preference_prefers_the_response_following_more_instructions():
    record = {
        "prompt": "p",
        "instruction_id_list": ["punctuation:no_comma", "detectable_format:title"],
        "kwargs": [{}, {}],
    }
    both, one, none = "<<T>>\nno commas here", "plain text", "<plain, text>"
    assert (ifeval.num_followed(record, both), ifeval.num_followed(record, one), ifeval.num_followed(record, none)) == (
        2,
        1,
        0,
    )
    assert ifeval.preference(record, both, one) == 1.0
    assert ifeval.preference(record, none, one) == 0.0
    assert ifeval.preference(record, one, "also plain") == 0.5


def test_preference_is_symmetric():
    candidates = [
        "all lowercase, no title",
        "<<TITLE>>\nALL CAPS NO COMMAS",
        "Sure!\n*one*\n* two",
        '{"answer": "My answer is yes."}',
        '"quoted answer"',
        "P.S. done\nAny other questions?",
    ]
    for record in ifeval.make_prompts(60, seed=9):
        for response_a, response_b in itertools.combinations(candidates, 2):
            forward = ifeval.preference(record, response_a, response_b)
            assert forward in (0.0, 0.5, 1.0)
            assert forward + ifeval.preference(record, response_b, response_a) == 1.0
