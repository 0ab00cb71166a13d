"""The judge interface: pairwise (which of two outputs is better) and pointwise (a score).

A judge turns (instruction, outputs) into a verdict. Verdicts that the judge's answer does not
support are `None`/NaN with `parsed=False`, so callers count them instead of scoring them 0.

Pairwise convention (AlpacaEval's): `preference` is in [1, 2]; 1 = output_1 better, 2 = output_2
better, 1.5 = tie; `p_output_2` = P(output_2 better) = preference - 1 where it is defined.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from alignax.evaluate.judges import prompts


@dataclasses.dataclass(frozen=True)
class PairwiseVerdict:
    preference: float  # in [1, 2] (AlpacaEval), NaN when unparsable
    raw: Any = None  # the judge's raw answer (text, logprobs or probabilities)

    @property
    def parsed(self) -> bool:
        return math.isfinite(self.preference)

    @property
    def p_output_2(self) -> float:
        return self.preference - 1.0


@dataclasses.dataclass(frozen=True)
class PointwiseVerdict:
    score: float  # NaN when unparsable
    raw: Any = None

    @property
    def parsed(self) -> bool:
        return math.isfinite(self.score)


class PairwiseJudge(abc.ABC):
    """Compares two outputs for one instruction."""

    @abc.abstractmethod
    def judge_pair(self, *, instruction: str, output_1: str, output_2: str) -> PairwiseVerdict: ...

    def judge_pairs(
        self, instructions: Sequence[str], outputs_1: Sequence[str], outputs_2: Sequence[str]
    ) -> list[PairwiseVerdict]:
        if not (len(instructions) == len(outputs_1) == len(outputs_2)):
            raise ValueError(
                f"lengths differ: {len(instructions)} instructions, {len(outputs_1)} "
                f"outputs_1, {len(outputs_2)} outputs_2"
            )
        return [
            self.judge_pair(instruction=i, output_1=a, output_2=b)
            for i, a, b in zip(instructions, outputs_1, outputs_2)
        ]


class PointwiseJudge(abc.ABC):
    """Scores one output for one instruction."""

    @abc.abstractmethod
    def judge_single(self, *, instruction: str, output: str) -> PointwiseVerdict: ...


class ChatBackend(Protocol):
    """What the prompt-based judges need from a chat model (e.g. `http.OpenAIChatClient`)."""

    def complete(self, messages: Sequence[dict[str, str]], **params: Any) -> Any: ...


class AlpacaEvalJudge(PairwiseJudge):
    """AlpacaEval 2's weighted judge over a chat backend: one token, top-5 logprobs of m/M."""

    def __init__(self, backend: ChatBackend, **params: Any):
        self.backend = backend
        # The judge config: max_tokens 1, temperature 1, logprobs with top 5 (configs.yaml).
        self.params = {"max_tokens": 1, "temperature": 1, "logprobs": True, "top_logprobs": 5, **params}

    def judge_pair(self, *, instruction: str, output_1: str, output_2: str) -> PairwiseVerdict:
        messages = prompts.alpaca_eval_messages(instruction=instruction, output_1=output_1, output_2=output_2)
        completion = self.backend.complete(messages, **self.params)
        top = completion.top_logprobs[0] if completion.top_logprobs else []
        return PairwiseVerdict(prompts.parse_alpaca_eval_logprobs(top), raw=top)


class TextVerdictJudge(PairwiseJudge):
    """A pairwise judge whose answer is text with a verdict label (Arena-Hard, MT-Bench pair).

    `label_to_preference` maps the parsed label to [1, 2]; unknown labels give NaN.
    """

    def __init__(
        self,
        backend: ChatBackend,
        *,
        prompt: prompts.JudgePrompt,
        parse: Callable[[str], str | None],
        label_to_preference: dict[str, float],
        fields: Callable[[str, str, str], dict[str, str]],
        **params: Any,
    ):
        self.backend, self.prompt, self.parse = backend, prompt, parse
        self.label_to_preference, self.fields, self.params = label_to_preference, fields, params

    def judge_pair(self, *, instruction: str, output_1: str, output_2: str) -> PairwiseVerdict:
        messages = self.prompt.messages(**self.fields(instruction, output_1, output_2))
        text = self.backend.complete(messages, **self.params).text
        label = self.parse(text)
        return PairwiseVerdict(self.label_to_preference.get(label, float("nan")), raw=text)


def arena_hard_judge(backend: ChatBackend, **params: Any) -> TextVerdictJudge:
    """Arena-Hard v0.1 judge (A = output_1); strong and slight verdicts both map to the side."""
    mapping = {"A>>B": 1.0, "A>B": 1.0, "A=B": 1.5, "B>A": 2.0, "B>>A": 2.0}
    return TextVerdictJudge(
        backend,
        prompt=prompts.ARENA_HARD,
        parse=prompts.parse_arena_hard_verdict,
        label_to_preference=mapping,
        fields=lambda q, a, b: {"question_1": q, "answer_1": a, "answer_2": b},
        **{"temperature": 0, "max_tokens": 4096, **params},
    )


def mt_bench_pair_judge(backend: ChatBackend, **params: Any) -> TextVerdictJudge:
    """MT-Bench `pair-v2` judge (first turn, general categories)."""
    from alignax.evaluate import mt_bench

    return TextVerdictJudge(
        backend,
        prompt=prompts.MT_BENCH["pair-v2"],
        parse=mt_bench.parse_pairwise_verdict,
        label_to_preference={"A": 1.0, "B": 2.0, "tie": 1.5},
        fields=lambda q, a, b: {"question": q, "answer_a": a, "answer_b": b},
        **{"temperature": 0, "max_tokens": 2048, **params},
    )


class MTBenchSingleJudge(PointwiseJudge):
    """MT-Bench `single-v1` judge: a 1-10 rating parsed with FastChat's rules."""

    def __init__(self, backend: ChatBackend, **params: Any):
        self.backend = backend
        self.params = {"temperature": 0, "max_tokens": 2048, **params}

    def judge_single(self, *, instruction: str, output: str) -> PointwiseVerdict:
        from alignax.evaluate import mt_bench

        messages = prompts.MT_BENCH["single-v1"].messages(question=instruction, answer=output)
        text = self.backend.complete(messages, **self.params).text
        rating = mt_bench.parse_rating(text)
        return PointwiseVerdict(float("nan") if rating == mt_bench.UNPARSABLE else rating, raw=text)


class WildBenchScoreJudge(PointwiseJudge):
    """WB-Score judge (checklist prompt, single user message)."""

    def __init__(self, backend: ChatBackend, *, checklist: Sequence[str] | str = "", **params: Any):
        self.backend, self.checklist = backend, checklist
        self.params = {"temperature": 0, "max_tokens": 4096, **params}

    def judge_single(self, *, instruction: str, output: str, history: str = "") -> PointwiseVerdict:
        text_prompt = prompts.wildbench_score_prompt(
            history=history, user_query=instruction, model_output=output, checklist=self.checklist
        )
        text = self.backend.complete([{"role": "user", "content": text_prompt}], **self.params).text
        score = prompts.parse_wildbench_score(text)
        return PointwiseVerdict(float("nan") if score is None else score, raw=text)
