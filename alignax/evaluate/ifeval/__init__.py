"""IFEval: verifiable instruction following (Zhou et al., 2023, arXiv:2311.07911).

"Instruction-Following Evaluation for Large Language Models", google-research/instruction_following_eval.
Instructions whose compliance code can verify ("answer with at least 300 words", "no commas",
"wrap the answer in JSON") are attached to prompts; a response is scored per instruction.

  check(id, kwargs, response, prompt=None)        strict verdict          (scoring.py)
  check_loose(id, kwargs, response, prompt=None)  loose verdict           (scoring.py)
  score(records)                                  prompt- / instruction-level strict and loose accuracy
  make_prompts(n, seed)                           IFEval-format prompt records from templates (prompts.py)
  preference(record, a, b), num_followed(record, response)
                                                  rule-based preference oracle for synthetic pairs

The 27 checkers (checkers.py) keep IFEval's instruction ids, keyword arguments and verdict rules:
the 24 of IFEval's registry except `language:response_language`, and three that IFEval defines
but leaves out of its registry (`keywords:key_sentences`, `detectable_content:rephrase_paragraph`,
`multi-turn:constrained_start`). Deviations from the official code, all for lack of a dependency:
- `language:response_language` is not supported: it needs langdetect, not a project dependency;
- `change_case:english_*` test "English" as "mostly Latin-script letters" instead of langdetect;
- sentences are counted with IFEval's own regex splitter instead of nltk punkt (no offline data);
- keywords, phrases and section splitters are matched literally (IFEval puts them into regexes
  unescaped; for the plain words IFEval uses the result is the same).
"""

from alignax.evaluate.ifeval.checkers import REGISTRY, RELATIONS
from alignax.evaluate.ifeval.prompts import CONFLICTS, TEMPLATES, TOPICS, make_prompts
from alignax.evaluate.ifeval.scoring import (
    check,
    check_loose,
    follow_list,
    loose_variants,
    num_followed,
    preference,
    preferences,
    resolve_kwargs,
    score,
)

INSTRUCTION_IDS = tuple(sorted(REGISTRY))

__all__ = [
    "CONFLICTS",
    "INSTRUCTION_IDS",
    "REGISTRY",
    "RELATIONS",
    "TEMPLATES",
    "TOPICS",
    "check",
    "check_loose",
    "follow_list",
    "loose_variants",
    "make_prompts",
    "num_followed",
    "preference",
    "preferences",
    "resolve_kwargs",
    "score",
]
