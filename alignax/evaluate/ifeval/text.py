"""Word, sentence and token counting with the conventions of IFEval's checkers.

Zhou et al. (2023), google-research/instruction_following_eval `instructions_util.py`:
- words are `\\w+` runs (nltk `RegexpTokenizer(r"\\w+")`, which is `re.findall` with the same pattern);
- sentences come from nltk's punkt model there; punkt's data is not available offline, so sentences
  here come from the regex splitter IFEval ships next to it (`split_into_sentences`): protect the
  dots that do not end a sentence (titles, initials, acronyms, decimals, web domains, ellipses),
  then cut after every remaining `.`, `?` and `!`;
- capital words are tokens of nltk's Treebank-style word tokenizer (`word_tokenize` without the
  punkt sentence pass; the pass only moves sentence-final periods, which never change `isupper`).
"""

from __future__ import annotations

import functools
import re

_WORD = re.compile(r"\w+")
_HAS_WORD = re.compile(r"\w")

# Protected dots become _DOT and sentence boundaries _STOP; neither can occur in ordinary text.
_DOT, _STOP = "\x00", "\x01"
_LETTER = "([A-Za-z])"
_TITLE = "(Mr|St|Mrs|Ms|Dr)[.]"
_COMPANY_SUFFIX = "(Inc|Ltd|Jr|Sr|Co)"
_SENTENCE_STARTER = (
    r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s"
    r"|However\s|That\s|This\s|Wherever)"
)
_ACRONYM = "([A-Z][.][A-Z][.](?:[A-Z][.])?)"
_WEB_DOMAIN = "[.](com|net|org|io|gov|edu|me)"

# (pattern, replacement) applied in order; the order matters (acronym stops before acronym dots).
_PROTECTION_RULES = (
    (_TITLE, rf"\1{_DOT}"),
    (_WEB_DOMAIN, rf"{_DOT}\1"),
    (r"([0-9])[.]([0-9])", rf"\1{_DOT}\2"),
    (r"\.{2,}", lambda m: _DOT * len(m.group(0)) + _STOP),
    (r"Ph\.D\.", f"Ph{_DOT}D{_DOT}"),
    (rf"\s{_LETTER}[.] ", rf" \1{_DOT} "),
    (f"{_ACRONYM} {_SENTENCE_STARTER}", rf"\1{_STOP} \2"),
    (f"{_LETTER}[.]{_LETTER}[.]{_LETTER}[.]", rf"\1{_DOT}\2{_DOT}\3{_DOT}"),
    (f"{_LETTER}[.]{_LETTER}[.]", rf"\1{_DOT}\2{_DOT}"),
    (f" {_COMPANY_SUFFIX}[.] {_SENTENCE_STARTER}", rf" \1{_STOP} \2"),
    (f" {_COMPANY_SUFFIX}[.]", rf" \1{_DOT}"),
    (f" {_LETTER}[.]", rf" \1{_DOT}"),
)
# A closing quote after the terminal mark moves before it, so the quote stays in its sentence.
_QUOTE_SWAPS = ((".\u201d", "\u201d."), ('."', '".'), ('!"', '"!'), ('?"', '"?'))


def count_words(text: str) -> int:
    """Number of `\\w+` tokens, as nltk's RegexpTokenizer(r"\\w+") in IFEval's `count_words`."""
    return len(_WORD.findall(text))


def split_into_sentences(text: str) -> list[str]:
    """Sentences of `text` by IFEval's regex rules (`instructions_util.split_into_sentences`)."""
    marked = (" " + text + "  ").replace("\n", " ")
    for pattern, replacement in _PROTECTION_RULES:
        marked = re.sub(pattern, replacement, marked)
    for before, after in _QUOTE_SWAPS:
        marked = marked.replace(before, after)
    for mark in ".?!":
        marked = marked.replace(mark, mark + _STOP)
    sentences = [piece.replace(_DOT, ".").strip() for piece in marked.split(_STOP)]
    if sentences and not sentences[-1]:
        sentences.pop()
    return sentences


def count_sentences(text: str) -> int:
    """Sentences holding at least one word character.

    Stands in for punkt's count in IFEval's `count_sentences`; pieces of bare punctuation ("!!",
    "?!") are not counted because punkt keeps them with the sentence they close.
    """
    return sum(1 for sentence in split_into_sentences(text) if _HAS_WORD.search(sentence))


@functools.lru_cache(maxsize=1)
def _treebank_tokenizer():
    from nltk.tokenize import NLTKWordTokenizer  # nltk is a project dependency; no data files needed

    return NLTKWordTokenizer()


def word_tokens(text: str) -> list[str]:
    """Treebank word tokens (contractions split, hyphenated words kept whole), as nltk.word_tokenize."""
    return _treebank_tokenizer().tokenize(text)


def count_capital_words(text: str) -> int:
    """Tokens whose cased characters are all upper case (IFEval's `capital_word_frequency`)."""
    return sum(1 for token in word_tokens(text) if token.isupper())
