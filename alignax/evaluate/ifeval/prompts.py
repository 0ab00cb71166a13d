"""IFEval-style prompts composed from task templates, a built-in topic list and instruction templates.

Zhou et al. (2023) build IFEval's 541 prompts by appending verifiable instructions to a base request
and keep only non-conflicting combinations (`instructions_registry.INSTRUCTION_CONFLICTS`). Here a
base request is a task template filled with a topic; 1-3 instructions are added, drawn in an order
fixed by the seed, skipping any that conflict with one already chosen. Records use IFEval's
input_data.jsonl format: `key`, `prompt`, `instruction_id_list`, `kwargs`.

Argument ranges follow IFEval's generators (`instructions.py`) except where a draw would make the
prompt impossible to follow: "less than" thresholds start at 2 sentences, and "less than" letter
counts use rare letters only.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable

TOPICS = (
    "urban beekeeping",
    "the history of the bicycle",
    "learning a second language",
    "volcanoes",
    "remote work",
    "composting at home",
    "the first moon landing",
    "coral reefs",
    "public libraries",
    "chess openings",
    "sourdough baking",
    "electric cars",
    "migratory birds",
    "the printing press",
    "saving for retirement",
    "jazz improvisation",
    "desert hiking",
    "recycling plastics",
    "the water cycle",
    "board game nights",
    "solar panels",
    "ancient Rome",
    "sleep hygiene",
    "community gardens",
    "deep sea creatures",
    "the invention of the telephone",
    "street food",
    "mountain rescue teams",
    "minimalist living",
    "black holes",
    "training a puppy",
    "lighthouses",
    "the Silk Road",
    "rainforest conservation",
    "marathon running",
    "origami",
    "tea ceremonies",
    "early computers",
    "wind turbines",
    "honeybee decline",
    "night photography",
    "the Olympic Games",
    "urban cycling lanes",
    "glaciers",
    "folk music",
    "space telescopes",
    "kitchen herbs",
    "the Great Barrier Reef",
    "volunteering abroad",
    "typewriters",
)

TASKS = (
    "Write a short essay about {topic}.",
    "Write a blog post about {topic}.",
    "Write a letter to a friend describing {topic}.",
    "Write a poem about {topic}.",
    "Explain {topic} to a ten year old.",
    "Write a product pitch for a startup that works on {topic}.",
    "Write a short story in which {topic} plays a central role.",
    "Give advice to a beginner who wants to learn about {topic}.",
    "Write a news report about a recent event involving {topic}.",
    "Write a speech for a school assembly about {topic}.",
    "Summarize the main arguments for and against investing public money in {topic}.",
    "Write a travel guide entry that mentions {topic}.",
)

# Keyword pool: common nouns that occur in no fixed instruction phrase (end phrases, markers,
# examples), so a forbidden word never clashes with text another instruction requires.
KEYWORDS = (
    "river",
    "garden",
    "engine",
    "window",
    "mirror",
    "ladder",
    "candle",
    "forest",
    "harbor",
    "bridge",
    "market",
    "pencil",
    "island",
    "thunder",
    "blanket",
    "compass",
    "lantern",
    "meadow",
    "orchard",
    "pepper",
    "rocket",
    "saddle",
    "tunnel",
    "velvet",
    "whistle",
    "anchor",
    "basket",
    "carpet",
    "dragon",
    "feather",
    "guitar",
    "hammer",
    "jacket",
    "kettle",
    "lemon",
    "marble",
    "needle",
    "ocean",
    "pillow",
    "quilt",
    "ribbon",
    "silver",
    "ticket",
    "umbrella",
    "valley",
    "wagon",
    "yogurt",
    "zebra",
    "castle",
    "planet",
)
END_PHRASES = (
    "Any other questions?",
    "Is there anything else I can help with?",
    "Let me know if you would like to hear more.",
)
POSTSCRIPT_MARKERS = ("P.S.", "P.P.S")
SECTION_SPLITERS = ("Section", "SECTION")
RARE_LETTERS = "jqxz"


@dataclasses.dataclass(frozen=True)
class InstructionTemplate:
    """How to draw an instruction's kwargs and how to phrase it in the prompt."""

    sample: Callable[[random.Random, Callable[[], str]], dict]
    describe: Callable[[dict], str]


def _relation_and_threshold(rng: random.Random, low: int, high: int, less_than_low: int | None = None):
    relation = rng.choice(("less than", "at least"))
    start = less_than_low if relation == "less than" and less_than_low is not None else low
    return relation, rng.randint(start, high)


def _sample_words(rng, draw_word):
    relation, num_words = _relation_and_threshold(rng, 50, 400)
    return {"relation": relation, "num_words": num_words}


def _sample_sentences(rng, draw_word):
    relation, num_sentences = _relation_and_threshold(rng, 1, 20, less_than_low=2)
    return {"relation": relation, "num_sentences": num_sentences}


def _sample_keyword_frequency(rng, draw_word):
    relation, frequency = _relation_and_threshold(rng, 1, 3)
    return {"keyword": draw_word(), "frequency": frequency, "relation": relation}


def _sample_letter_frequency(rng, draw_word):
    relation, frequency = _relation_and_threshold(rng, 1, 10)
    letter = rng.choice(RARE_LETTERS if relation == "less than" else "abcdefghijklmnopqrstuvwxyz")
    return {"letter": letter, "let_frequency": frequency, "let_relation": relation}


def _sample_capital_words(rng, draw_word):
    relation, frequency = _relation_and_threshold(rng, 1, 20, less_than_low=2)
    return {"capital_frequency": frequency, "capital_relation": relation}


def _sample_nth_paragraph(rng, draw_word):
    num_paragraphs = rng.randint(2, 5)
    return {
        "num_paragraphs": num_paragraphs,
        "nth_paragraph": rng.randint(1, num_paragraphs),
        "first_word": draw_word(),
    }


def _no_kwargs(rng, draw_word):
    return {}


def _quoted(words) -> str:
    return " and ".join(f"'{word}'" for word in words)


TEMPLATES: dict[str, InstructionTemplate] = {
    "keywords:existence": InstructionTemplate(
        lambda rng, draw: {"keywords": sorted(draw() for _ in range(rng.randint(1, 2)))},
        lambda kw: f"Include the keywords {_quoted(kw['keywords'])} in the response.",
    ),
    "keywords:forbidden_words": InstructionTemplate(
        lambda rng, draw: {"forbidden_words": sorted(draw() for _ in range(rng.randint(1, 2)))},
        lambda kw: f"Do not include the words {_quoted(kw['forbidden_words'])} in the response.",
    ),
    "keywords:frequency": InstructionTemplate(
        _sample_keyword_frequency,
        lambda kw: (
            f"In your response the word '{kw['keyword']}' should appear {kw['relation']} {kw['frequency']} times."
        ),
    ),
    "keywords:letter_frequency": InstructionTemplate(
        _sample_letter_frequency,
        lambda kw: (
            f"In your response the letter {kw['letter']} should appear {kw['let_relation']} "
            f"{kw['let_frequency']} times."
        ),
    ),
    "length_constraints:number_words": InstructionTemplate(
        _sample_words, lambda kw: f"Answer with {kw['relation']} {kw['num_words']} words."
    ),
    "length_constraints:number_sentences": InstructionTemplate(
        _sample_sentences, lambda kw: f"Your response should contain {kw['relation']} {kw['num_sentences']} sentences."
    ),
    "length_constraints:number_paragraphs": InstructionTemplate(
        lambda rng, draw: {"num_paragraphs": rng.randint(2, 5)},
        lambda kw: (
            f"There should be {kw['num_paragraphs']} paragraphs. Paragraphs are separated with the "
            "markdown divider: ***"
        ),
    ),
    "length_constraints:nth_paragraph_first_word": InstructionTemplate(
        _sample_nth_paragraph,
        lambda kw: (
            f"There should be {kw['num_paragraphs']} paragraphs. Paragraphs and only paragraphs are "
            "separated from each other by two new lines. "
            f"Paragraph {kw['nth_paragraph']} must start with the word {kw['first_word']}."
        ),
    ),
    "detectable_content:number_placeholders": InstructionTemplate(
        lambda rng, draw: {"num_placeholders": rng.randint(1, 4)},
        lambda kw: (
            f"The response must contain at least {kw['num_placeholders']} placeholders represented by "
            "square brackets such as [address]."
        ),
    ),
    "detectable_content:postscript": InstructionTemplate(
        lambda rng, draw: {"postscript_marker": rng.choice(POSTSCRIPT_MARKERS)},
        lambda kw: (
            f"At the end of your response please explicitly add a postscript starting with {kw['postscript_marker']}"
        ),
    ),
    "detectable_format:number_bullet_lists": InstructionTemplate(
        lambda rng, draw: {"num_bullets": rng.randint(1, 5)},
        lambda kw: (
            f"Your answer must contain exactly {kw['num_bullets']} bullet points. Use markdown bullet "
            "points such as:\n* This is point 1.\n* This is point 2"
        ),
    ),
    "detectable_format:constrained_response": InstructionTemplate(
        _no_kwargs,
        lambda kw: (
            "Answer with one of the following options: ('My answer is yes.', 'My answer is no.', 'My answer is maybe.')"
        ),
    ),
    "detectable_format:number_highlighted_sections": InstructionTemplate(
        lambda rng, draw: {"num_highlights": rng.randint(1, 4)},
        lambda kw: (
            f"Highlight at least {kw['num_highlights']} sections in your answer with markdown, i.e. "
            "*highlighted section*."
        ),
    ),
    "detectable_format:multiple_sections": InstructionTemplate(
        lambda rng, draw: {"section_spliter": rng.choice(SECTION_SPLITERS), "num_sections": rng.randint(2, 5)},
        lambda kw: (
            f"Your response must have {kw['num_sections']} sections. Mark the beginning of each section "
            f"with {kw['section_spliter']} X, such as:\n{kw['section_spliter']} 1\n"
            f"[content of section 1]\n{kw['section_spliter']} 2\n[content of section 2]"
        ),
    ),
    "detectable_format:json_format": InstructionTemplate(
        _no_kwargs, lambda kw: "Entire output should be wrapped in JSON format. You can use markdown ticks such as ```."
    ),
    "detectable_format:title": InstructionTemplate(
        _no_kwargs,
        lambda kw: "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
    ),
    "combination:two_responses": InstructionTemplate(
        _no_kwargs,
        lambda kw: (
            "Give two different responses. Responses and only responses should be separated "
            "by 6 asterisk symbols: ******."
        ),
    ),
    "combination:repeat_prompt": InstructionTemplate(
        _no_kwargs,  # prompt_to_repeat is filled in by _compose once the rest of the prompt is known
        lambda kw: (
            "First repeat the request word for word without change, then give your answer (1. do not say "
            "any words or characters before repeating the request; 2. the request you need to repeat "
            "does not include this sentence)"
        ),
    ),
    "startend:end_checker": InstructionTemplate(
        lambda rng, draw: {"end_phrase": rng.choice(END_PHRASES)},
        lambda kw: (
            f"Finish your response with this exact phrase {kw['end_phrase']} No other words should follow this phrase."
        ),
    ),
    "startend:quotation": InstructionTemplate(
        _no_kwargs, lambda kw: "Wrap your entire response with double quotation marks."
    ),
    "change_case:english_lowercase": InstructionTemplate(
        _no_kwargs,
        lambda kw: (
            "Your entire response should be in English, and in all lowercase letters. No capital letters are allowed."
        ),
    ),
    "change_case:english_capital": InstructionTemplate(
        _no_kwargs, lambda kw: "Your entire response should be in English, and in all capital letters."
    ),
    "change_case:capital_word_frequency": InstructionTemplate(
        _sample_capital_words,
        lambda kw: (
            f"In your response, words with all capital letters should appear {kw['capital_relation']} "
            f"{kw['capital_frequency']} times."
        ),
    ),
    "punctuation:no_comma": InstructionTemplate(
        _no_kwargs, lambda kw: "In your entire response, refrain from the use of any commas."
    ),
}


def _conflict_table() -> dict[str, set[str]]:
    """Symmetric conflicts: IFEval's INSTRUCTION_CONFLICTS plus pairs it misses.

    Added: lowercase/capital answers cannot hold a case-sensitive "Section 1" header of the other
    case, and a request that must be repeated verbatim contains commas.
    """
    every = set(TEMPLATES)
    conflicts: dict[str, set[str]] = {instruction_id: {instruction_id} for instruction_id in every}
    excluded_from_all = {
        "detectable_format:constrained_response": set(),
        "detectable_format:json_format": {"keywords:forbidden_words", "keywords:existence"},
        "combination:two_responses": {
            "keywords:forbidden_words",
            "keywords:existence",
            "detectable_format:title",
            "punctuation:no_comma",
        },
        "combination:repeat_prompt": {"keywords:existence", "detectable_format:title"},
    }
    for instruction_id, allowed in excluded_from_all.items():
        conflicts[instruction_id] |= every - allowed
    pairs = [
        ("length_constraints:number_paragraphs", "length_constraints:nth_paragraph_first_word"),
        ("length_constraints:number_paragraphs", "length_constraints:number_sentences"),
        ("detectable_format:multiple_sections", "detectable_format:number_highlighted_sections"),
        ("change_case:capital_word_frequency", "change_case:english_lowercase"),
        ("change_case:capital_word_frequency", "change_case:english_capital"),
        ("change_case:english_lowercase", "change_case:english_capital"),
        ("startend:quotation", "detectable_format:title"),
        ("change_case:english_lowercase", "detectable_format:multiple_sections"),
        ("change_case:english_capital", "detectable_format:multiple_sections"),
    ]
    for first, second in pairs:
        conflicts[first].add(second)
    for instruction_id, others in list(conflicts.items()):
        for other in others:
            conflicts[other].add(instruction_id)
    return conflicts


CONFLICTS = _conflict_table()


def _choose_instructions(rng: random.Random, count: int) -> list[str]:
    chosen: list[str] = []
    for candidate in rng.sample(sorted(TEMPLATES), len(TEMPLATES)):
        if len(chosen) == count:
            break
        if not any(candidate in CONFLICTS[other] for other in chosen):
            chosen.append(candidate)
    # The repeat instruction must come last: the request to repeat is everything before it.
    return sorted(chosen, key=lambda instruction_id: instruction_id == "combination:repeat_prompt")


def _compose(rng: random.Random) -> dict:
    request = rng.choice(TASKS).format(topic=rng.choice(TOPICS))
    words = iter(rng.sample(KEYWORDS, len(KEYWORDS)))
    ids = _choose_instructions(rng, rng.randint(1, 3))
    kwargs, parts = [], [request]
    for instruction_id in ids:
        arguments = TEMPLATES[instruction_id].sample(rng, lambda: next(words))
        if instruction_id == "combination:repeat_prompt":
            arguments = {"prompt_to_repeat": " ".join(parts)}
        kwargs.append(arguments)
        parts.append(TEMPLATES[instruction_id].describe(arguments))
    return {"prompt": " ".join(parts), "instruction_id_list": ids, "kwargs": kwargs}


def make_prompts(n: int, seed: int = 0) -> list[dict]:
    """`n` distinct prompt records, the same for the same seed.

    Each record has `key` (0..n-1), `prompt`, `instruction_id_list` (1-3 non-conflicting ids) and
    `kwargs` (one dict per id), as in IFEval's input_data.jsonl.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    rng = random.Random(seed)
    records, seen = [], set()
    for _ in itertools.repeat(None, 100 * n + 100):
        if len(records) == n:
            break
        record = _compose(rng)
        if record["prompt"] not in seen:
            seen.add(record["prompt"])
            records.append({"key": len(records), **record})
    if len(records) < n:
        raise ValueError(f"could only compose {len(records)} distinct prompts, {n} requested")
    return records
