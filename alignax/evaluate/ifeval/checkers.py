"""Verifiable instructions checked by code, keyed by IFEval's instruction ids.

Zhou et al. (2023), "Instruction-Following Evaluation for Large Language Models",
google-research/instruction_following_eval `instructions.py` / `instructions_registry.py`. Each
checker keeps the official keyword arguments and verdict rules (thresholds, strict "less than",
inclusive "at least", which regex counts what); the deviations are listed in the package docstring.

A checker is a plain function `(response, **kwargs) -> bool` registered with the validators of its
keyword arguments; `REGISTRY[instruction_id]` holds both.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from alignax.evaluate.ifeval import text

RELATIONS = ("less than", "at least")  # keys of _RELATION_TESTS
CONSTRAINED_RESPONSE_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
TWO_RESPONSES_SEPARATOR = "******"

Validator = Callable[[str, str, Any], Any]


@dataclasses.dataclass(frozen=True)
class InstructionSpec:
    """A checker and the validators of its keyword arguments (all required)."""

    instruction_id: str
    check: Callable[..., bool]
    params: Mapping[str, Validator]


REGISTRY: dict[str, InstructionSpec] = {}


def _register(instruction_id: str, **params: Validator):
    def decorator(check):
        REGISTRY[instruction_id] = InstructionSpec(instruction_id, check, params)
        return check

    return decorator


# ---------------------------------------------------------------- keyword-argument validators


def _count(instruction_id: str, key: str, value: Any) -> int:
    """A non-negative integer (an integral float, as JSON readers may give, is accepted)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{instruction_id}: {key} must be a non-negative integer, got {value!r}")
    return value


def _positive(instruction_id: str, key: str, value: Any) -> int:
    value = _count(instruction_id, key, value)
    if value == 0:
        raise ValueError(f"{instruction_id}: {key} must be at least 1, got 0")
    return value


def _relation(instruction_id: str, key: str, value: Any) -> str:
    if value not in RELATIONS:
        raise ValueError(f"{instruction_id}: {key} must be one of {RELATIONS}, got {value!r}")
    return value


def _phrase(instruction_id: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{instruction_id}: {key} must be a non-empty string, got {value!r}")
    return value.strip()


def _phrases(instruction_id: str, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{instruction_id}: {key} must be a non-empty list of strings, got {value!r}")
    return tuple(_phrase(instruction_id, key, item) for item in value)


def _letter(instruction_id: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or len(value.strip()) != 1 or not "a" <= value.strip().lower() <= "z":
        raise ValueError(f"{instruction_id}: {key} must be one ASCII letter, got {value!r}")
    return value.strip().lower()


# IFEval's two relations: "less than" is strict, "at least" inclusive.
_RELATION_TESTS = {"less than": operator.lt, "at least": operator.ge}


def _compare(actual: int, relation: str, threshold: int) -> bool:
    return _RELATION_TESTS[relation](actual, threshold)


def _looks_english(response: str) -> bool:
    """Letters are mostly Latin script.

    IFEval asks langdetect for "en" here; langdetect is not a project dependency, so only the script
    is checked (a Cyrillic or CJK answer fails, a French one passes).
    """
    letters = [char for char in response if char.isalpha()]
    if not letters:
        return True  # IFEval counts an undetectable language as followed
    latin = sum(1 for char in letters if char.isascii())
    return latin >= 0.9 * len(letters)


# ---------------------------------------------------------------- keywords


@_register("keywords:existence", keywords=_phrases)
def keywords_existence(response: str, keywords) -> bool:
    """Every keyword occurs, case-insensitively, anywhere (also inside longer words)."""
    return all(re.search(re.escape(word), response, flags=re.IGNORECASE) for word in keywords)


@_register("keywords:forbidden_words", forbidden_words=_phrases)
def keywords_forbidden_words(response: str, forbidden_words) -> bool:
    """No forbidden word occurs as a whole word, case-insensitively."""
    return not any(re.search(rf"\b{re.escape(word)}\b", response, flags=re.IGNORECASE) for word in forbidden_words)


@_register("keywords:frequency", keyword=_phrase, frequency=_count, relation=_relation)
def keywords_frequency(response: str, keyword, frequency, relation) -> bool:
    """Case-insensitive, non-overlapping occurrences of the keyword compared with `frequency`."""
    occurrences = len(re.findall(re.escape(keyword), response, flags=re.IGNORECASE))
    return _compare(occurrences, relation, frequency)


@_register("keywords:letter_frequency", letter=_letter, let_frequency=_count, let_relation=_relation)
def keywords_letter_frequency(response: str, letter, let_frequency, let_relation) -> bool:
    """Occurrences of the letter, either case, compared with `let_frequency`."""
    return _compare(response.lower().count(letter), let_relation, let_frequency)


@_register("keywords:key_sentences", key_sentences=_phrases, num_sentences=_count)
def keywords_key_sentences(response: str, key_sentences, num_sentences) -> bool:
    """Exactly `num_sentences` of the key sentences appear as whole sentences of the response."""
    sentences = set(text.split_into_sentences(response))
    return sum(1 for sentence in set(key_sentences) if sentence in sentences) == num_sentences


# ---------------------------------------------------------------- length constraints


@_register("length_constraints:number_words", num_words=_count, relation=_relation)
def number_words(response: str, num_words, relation) -> bool:
    return _compare(text.count_words(response), relation, num_words)


@_register("length_constraints:number_sentences", num_sentences=_count, relation=_relation)
def number_sentences(response: str, num_sentences, relation) -> bool:
    return _compare(text.count_sentences(response), relation, num_sentences)


@_register("length_constraints:number_paragraphs", num_paragraphs=_positive)
def number_paragraphs(response: str, num_paragraphs) -> bool:
    """Exactly `num_paragraphs` pieces between `***` dividers; an empty inner piece fails."""
    pieces = re.split(r"\s?\*\*\*\s?", response)
    inner_empty = any(not piece.strip() for piece in pieces[1:-1])
    found = sum(1 for piece in pieces if piece.strip())
    return not inner_empty and found == num_paragraphs


@_register(
    "length_constraints:nth_paragraph_first_word", num_paragraphs=_positive, nth_paragraph=_positive, first_word=_phrase
)
def nth_paragraph_first_word(response: str, num_paragraphs, nth_paragraph, first_word) -> bool:
    """`num_paragraphs` paragraphs split on a blank line, and paragraph n starts with `first_word`.

    As in IFEval, n indexes the raw "\\n\\n" pieces (empty ones included) while the count skips
    empty pieces; the first word loses leading quotes and is cut at the first . , ? ! ' or ".
    """
    pieces = response.split("\n\n")
    found = sum(1 for piece in pieces if piece.strip())
    if nth_paragraph > found or not pieces[nth_paragraph - 1].strip():
        return False
    word = pieces[nth_paragraph - 1].split()[0].lstrip("'").lstrip('"')
    word = re.split(r"[.,?!'\"]", word, maxsplit=1)[0].lower()
    return found == num_paragraphs and word == first_word.lower()


# ---------------------------------------------------------------- detectable content


@_register("detectable_content:number_placeholders", num_placeholders=_count)
def number_placeholders(response: str, num_placeholders) -> bool:
    """At least `num_placeholders` square-bracket placeholders such as [address]."""
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


_POSTSCRIPT_PATTERNS = {"P.P.S": r"\s*p\.\s?p\.\s?s.*$", "P.S.": r"\s*p\.\s?s\..*$"}


@_register("detectable_content:postscript", postscript_marker=_phrase)
def postscript(response: str, postscript_marker) -> bool:
    """Some line holds the marker, case-insensitively ("P.S." also as "p. s.")."""
    pattern = _POSTSCRIPT_PATTERNS.get(postscript_marker, r"\s*" + re.escape(postscript_marker.lower()) + r".*$")
    return re.search(pattern, response.lower(), flags=re.MULTILINE) is not None


@_register("detectable_content:rephrase_paragraph", original_paragraph=_phrase, low=_count, high=_count)
def rephrase_paragraph(response: str, original_paragraph, low, high) -> bool:
    """Between `low` and `high` (inclusive) words shared with the original, counted with multiplicity."""
    ours = collections.Counter(re.findall(r"\w+", response.lower()))
    theirs = collections.Counter(re.findall(r"\w+", original_paragraph.lower()))
    shared = sum(min(count, ours[word]) for word, count in theirs.items())
    return low <= shared <= high


# ---------------------------------------------------------------- detectable format


@_register("detectable_format:number_bullet_lists", num_bullets=_count)
def number_bullet_lists(response: str, num_bullets) -> bool:
    """Exactly `num_bullets` lines starting with `* ` (not `**`) or `-`."""
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


@_register("detectable_format:constrained_response")
def constrained_response(response: str) -> bool:
    """The response contains one of "My answer is yes." / "... no." / "... maybe."."""
    return any(option in response.strip() for option in CONSTRAINED_RESPONSE_OPTIONS)


@_register("detectable_format:number_highlighted_sections", num_highlights=_count)
def number_highlighted_sections(response: str, num_highlights) -> bool:
    """At least `num_highlights` non-empty *spans* or **spans** on one line (IFEval counts both)."""
    singles = re.findall(r"\*[^\n\*]*\*", response)
    doubles = re.findall(r"\*\*[^\n\*]*\*\*", response)
    found = sum(1 for span in singles if span.strip("*").strip())
    found += sum(1 for span in doubles if span[2:-2].strip())
    return found >= num_highlights


@_register("detectable_format:multiple_sections", section_spliter=_phrase, num_sections=_count)
def multiple_sections(response: str, section_spliter, num_sections) -> bool:
    """At least `num_sections` headers "<spliter> <number>" (case-sensitive, as in IFEval)."""
    pieces = re.split(r"\s?" + re.escape(section_spliter) + r"\s?\d+\s?", response)
    return len(pieces) - 1 >= num_sections


def _strip_code_fence(response: str) -> str:
    value = response.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):  # one after the other, as IFEval does
        value = value.removeprefix(fence)
    return value.removesuffix("```").strip()


@_register("detectable_format:json_format")
def json_format(response: str) -> bool:
    """The whole response parses as JSON, optionally inside a ``` / ```json fence."""
    try:
        json.loads(_strip_code_fence(response))
    except ValueError:
        return False
    return True


@_register("detectable_format:title")
def title(response: str) -> bool:
    """A non-empty title in double angular brackets on one line, such as <<poem of joy>>."""
    return any(found.lstrip("<").rstrip(">").strip() for found in re.findall(r"<<[^\n]+>>", response))


# ---------------------------------------------------------------- combination


@_register("combination:two_responses")
def two_responses(response: str) -> bool:
    """Two different non-empty answers separated by ******; empty pieces only at the ends."""
    pieces = response.split(TWO_RESPONSES_SEPARATOR)
    if any(not piece.strip() for piece in pieces[1:-1]):
        return False
    answers = [piece.strip() for piece in pieces if piece.strip()]
    return len(answers) == 2 and answers[0] != answers[1]


@_register("combination:repeat_prompt", prompt_to_repeat=_phrase)
def repeat_prompt(response: str, prompt_to_repeat) -> bool:
    """The response starts with the request, word for word up to case and outer whitespace."""
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


# ---------------------------------------------------------------- start / end


@_register("startend:end_checker", end_phrase=_phrase)
def end_checker(response: str, end_phrase) -> bool:
    """The response ends with the phrase, ignoring case, outer whitespace and outer double quotes."""
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


@_register("startend:quotation")
def quotation(response: str) -> bool:
    """The stripped response is wrapped in double quotation marks."""
    value = response.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'


@_register("multi-turn:constrained_start", starter=_phrase)
def constrained_start(response: str, starter) -> bool:
    """Some line starts (after spaces) with the starter phrase, case-sensitively (IFEval's regex)."""
    return re.search(r"^\s*" + re.escape(starter) + r".*$", response, flags=re.MULTILINE) is not None


# ---------------------------------------------------------------- change case and punctuation


@_register("change_case:english_lowercase")
def english_lowercase(response: str) -> bool:
    return response.islower() and _looks_english(response)


@_register("change_case:english_capital")
def english_capital(response: str) -> bool:
    return response.isupper() and _looks_english(response)


@_register("change_case:capital_word_frequency", capital_frequency=_count, capital_relation=_relation)
def capital_word_frequency(response: str, capital_frequency, capital_relation) -> bool:
    """All-capital word tokens compared with `capital_frequency`; hyphenated words count once."""
    return _compare(text.count_capital_words(response), capital_relation, capital_frequency)


@_register("punctuation:no_comma")
def no_comma(response: str) -> bool:
    return "," not in response
