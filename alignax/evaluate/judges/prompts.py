"""Judge prompt templates of the benchmarks, restated verbatim from their public sources.

A judge prompt is part of the benchmark's definition: a changed word changes the numbers, so
these are exact copies (tests compare them with the published files where those are at hand).

- AlpacaEval 2 (`weighted_alpaca_eval_gpt4_turbo`): tatsu-lab/alpaca_eval
  `evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt`; the judge answers one
  token, "m" (output_1) or "M" (output_2), and the top-5 logprobs are read.
- WildBench v2: allenai/WildBench `evaluation/eval_template.score.v2.md` (1-10 score with a
  per-task checklist) and `evaluation/eval_template.pairwise.v2.md` (A++ / A+ / A=B / B+ / B++);
  placeholders are `{$history}`, `{$user_query}`, `{$model_output}` / `{$candidate_A}`,
  `{$candidate_B}`, `{$checklist}`, filled by plain string replacement.
- Arena-Hard v0.1: lmarena/arena-hard-auto `config/judge_config.yaml` (system prompt and
  template; verdict regex `\\[\\[([AB<>=]+)\\]\\]`).
- MT-Bench: lm-sys/FastChat `fastchat/llm_judge/data/judge_prompts.jsonl` (all eight prompts).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

Message = dict[str, str]


@dataclasses.dataclass(frozen=True)
class JudgePrompt:
    """A system prompt plus a user-turn template with `str.format` fields."""

    name: str
    kind: str  # "single" (pointwise) or "pairwise"
    output_format: str
    system_prompt: str
    prompt_template: str

    def messages(self, **fields: str) -> list[Message]:
        """[system, user] chat messages with the template's fields filled in."""
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": self.prompt_template.format(**fields)},
        ]


# ----------------------------------------------------------------------------------- AlpacaEval
ALPACA_EVAL_CLF = '''<|im_start|>system
You are a highly efficient assistant, who evaluates and selects the best large language model (LLMs) based on the quality of their responses to a given instruction. This process will be used to create a leaderboard reflecting the most accurate and human-preferred answers.
<|im_end|>
<|im_start|>user
I require a leaderboard for various large language models. I'll provide you with prompts given to these models and their corresponding outputs. Your task is to assess these responses, and select the model that produces the best output from a human perspective.

## Instruction

{
    "instruction": """{instruction}""",
}

## Model Outputs

Here are the unordered outputs from the models. Each output is associated with a specific model, identified by a unique model identifier.

{
    {
        "model_identifier": "m",
        "output": """{output_1}"""
    },
    {
        "model_identifier": "M",
        "output": """{output_2}"""
    }
}

## Task

Evaluate the models based on the quality and relevance of their outputs, and select the model that generated the best output. Answer by providing the model identifier of the best model. We will use your output as the name of the best model, so make sure your output only contains one of the following model identifiers and nothing else (no quotes, no spaces, no new lines, ...): m or M.

## Best Model Identifier
<|im_end|>'''
ALPACA_EVAL_VERDICT_TOKENS = ("m", "M")  # m = output_1 (the baseline), M = output_2


def alpaca_eval_messages(*, instruction: str, output_1: str, output_2: str) -> list[Message]:
    """The AlpacaEval classifier prompt as chat messages.

    Fields are filled by replacing `{name}` (the template's literal JSON braces stay), then the
    ChatML blocks `<|im_start|>role\\n...\\n<|im_end|>` become messages, as alpaca_eval's
    `prompt_to_chatml` does.
    """
    text = ALPACA_EVAL_CLF
    # First occurrence only, in template order, exactly as alpaca_eval's `make_prompts` does,
    # so that the judge sees the same text even for outputs that contain "{...}" fields.
    for key, value in (("instruction", instruction), ("output_1", output_1), ("output_2", output_2)):
        text = text.replace("{" + key + "}", value, 1)
    return chatml_to_messages(text)


def chatml_to_messages(prompt: str) -> list[Message]:
    """`<|im_start|>role\\ncontent\\n<|im_end|>` blocks -> [{"role", "content"}] (stripped)."""
    messages = []
    for block in prompt.split("<|im_start|>")[1:]:
        body = block.split("<|im_end|>")[0]
        role, _, content = body.partition("\n")
        role = role.strip()
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"unknown ChatML role {role!r}")
        messages.append({"role": role, "content": content.strip()})
    if not messages:
        raise ValueError("no <|im_start|> block in the prompt")
    return messages


def alpaca_eval_preference(p_output_1: float, p_output_2: float) -> float:
    """AlpacaEval's preference from the verdict probabilities: 2 - P(m) / (P(m) + P(M)).

    1 = output_1 (baseline) better, 2 = output_2 better; NaN when neither token has mass
    (alpaca_eval's logprob_parser), never a silent 1.5.
    """
    total = p_output_1 + p_output_2
    if not total > 0:
        return float("nan")
    return 2.0 - p_output_1 / total


def parse_alpaca_eval_logprobs(top_logprobs: Sequence[Mapping[str, Any]]) -> float:
    """Preference from an OpenAI `top_logprobs` list of the first generated token.

    Each entry is {"token": str, "logprob": float}; tokens other than "m"/"M" are ignored.
    """
    import math

    probs = {token: 0.0 for token in ALPACA_EVAL_VERDICT_TOKENS}
    for entry in top_logprobs:
        if entry.get("token") in probs:
            probs[entry["token"]] += math.exp(entry["logprob"])
    return alpaca_eval_preference(probs["m"], probs["M"])


# ------------------------------------------------------------------------------------ WildBench
WILDBENCH_SCORE_V2 = """# Instruction 

You are an expert evaluator. Your task is to evaluate the quality of the responses generated by AI models. 
We will provide you with the user query and an AI-generated responses.
You should first read the user query and the conversation history carefully for analyzing the task, and then evaluate the quality of the responses based on and rules provided below.

# Conversation between User and AI

## History
<|begin_of_history|>

{$history}

<|end_of_history|> 

## Current User Query
<|begin_of_query|>

{$user_query}

<|end_of_query|>

## AI Response
<|begin_of_response|>

{$model_output}

<|end_of_response|>
 

# Evaluation   

## Checklist 

<|begin_of_checklist|>

{$checklist}

<|end_of_checklist|>

Please use this checklist to guide your evaluation, but do not limit your assessment to the checklist.

## Rules 

You should compare the above response based on your analysis of the user queries and the conversation history.
You should first write down your analysis and the checklist that you used for the evaluation, and then provide your assessment according to the checklist.
The scores are in the range of 1~10, where 1 means the response is very poor and 10 means the response is perfect.
Here are more detailed criteria for the scores:

- Score 1~2: The response is very poor and does not make sense at all.
- Score 3~4: The response is poor and does help user solve the problem in a meaningful way.
- Score 5~6: The response is fair but has some issues (e.g., factual errors, hallucinations, missing key information).
- Score 7~8: The response is good enough but could be improved in some ways.
- Score 9~10: The response is perfect and provides helpful information that can help user solve the problem.

## Output Format 
First, please output your analysis for each model response, and then summarize your assessment to three aspects: "reason A=B", "reason A>B", and "reason B>A", and finally make your choice for the final assessment.

Please provide your evaluation results in the following json format by filling in the placeholders in []:
```
{
    "strengths": "[analysis for the strengths of the response]",
    "weaknesses": "[analysis for the weaknesses of the response]",
    "score": "[1~10]"
}
```"""

WILDBENCH_PAIRWISE_V2 = """# Instruction 

You are an expert evaluator. Your task is to evaluate the quality of the responses generated by two AI models. 
We will provide you with the user query and a pair of AI-generated responses (Response A and Response B). 
You should first read the user query and the conversation history carefully for analyzing the task, and then evaluate the quality of the responses based on and rules provided below.

# Conversation between User and AI

## History
<|begin_of_history|>

{$history}

<|end_of_history|> 

## Current User Query
<|begin_of_query|>

{$user_query}

<|end_of_query|>

## Response A
<|begin_of_response_A|>

{$candidate_A}

<|end_of_response_A|>

## Response B
<|begin_of_response_B|>

{$candidate_B}

<|end_of_response_B|>

# Evaluation   

## Checklist 

<|begin_of_checklist|>

{$checklist}

<|end_of_checklist|>

Please use this checklist to guide your evaluation, but do not limit your assessment to the checklist.

## Rules 

You should compare the above two responses based on your analysis of the user queries and the conversation history.
You should first write down your analysis and the checklist that you used for the evaluation, and then provide your assessment according to the checklist.
There are five choices to give your final assessment: ["A++", "A+", "A=B", "B+", "B++"], which correspond to the following meanings:

- `A++`: Response A is much better than Response B.
- `A+`: Response A is only slightly better than Response B.
- `A=B`: Response A and B are of the same quality. Please use this choice sparingly.
- `B+`: Response B is only slightly better than Response A.
- `B++`: Response B is much better than Response A.


## Output Format 
First, please output your analysis for each model response, and then summarize your assessment to three aspects: "reason A=B", "reason A>B", and "reason B>A", and finally make your choice for the final assessment.

Please provide your evaluation results in the following json format by filling in the placeholders in []:
```
{   "analysis of A": "[analysis of Response A]",
    "analysis of B": "[analysis of Response B]",
    "reason of A=B": "[where Reponse A and B pefrom equally well]",
    "reason of A>B": "[where Response A is better than Response B]",
    "reason of B>A": "[where Response B is better than Response A]",
    "choice": "[A++ or A+ or A=B or B+ or B++]",
}
```"""

# WildBench choice -> (winner slot, extent) as stored in its pairwise judgment files.
WILDBENCH_CHOICES = {"A++": ("A", 2), "A+": ("A", 1), "A=B": ("tie", 0), "B+": ("B", 1), "B++": ("B", 2)}


def _format_checklist(checklist: Sequence[str] | str) -> str:
    if isinstance(checklist, str):
        return checklist
    return "\n".join(f"- {item}" for item in checklist)


def wildbench_score_prompt(*, history: str, user_query: str, model_output: str, checklist: Sequence[str] | str) -> str:
    """The WB-Score judge prompt (single user message)."""
    return (
        WILDBENCH_SCORE_V2.replace("{$history}", history)
        .replace("{$user_query}", user_query)
        .replace("{$model_output}", model_output)
        .replace("{$checklist}", _format_checklist(checklist))
    )


def wildbench_pairwise_prompt(
    *, history: str, user_query: str, candidate_a: str, candidate_b: str, checklist: Sequence[str] | str
) -> str:
    """The WB-Reward judge prompt (single user message)."""
    return (
        WILDBENCH_PAIRWISE_V2.replace("{$history}", history)
        .replace("{$user_query}", user_query)
        .replace("{$candidate_A}", candidate_a)
        .replace("{$candidate_B}", candidate_b)
        .replace("{$checklist}", _format_checklist(checklist))
    )


def _json_field(text: str, field: str) -> str | None:
    """A string field of the judge's JSON answer; falls back to a regex for sloppy JSON."""
    match = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if match:
        try:
            value = json.loads(match.group(0)).get(field)
            if value is not None:
                return str(value)
        except (json.JSONDecodeError, AttributeError):
            pass
    match = re.search(r'"' + re.escape(field) + r'"\s*:\s*"?([^",}\n]+)"?', text)
    return match.group(1).strip() if match else None


def parse_wildbench_score(text: str) -> float | None:
    """The 1-10 "score" of a WB-Score judgment, or None when absent/unparsable/out of range."""
    value = _json_field(text, "score")
    try:
        score = float(value) if value is not None else None
    except ValueError:
        return None
    return score if score is not None and 1 <= score <= 10 else None


def parse_wildbench_choice(text: str) -> str | None:
    """The "choice" (A++, A+, A=B, B+, B++) of a WB-Reward judgment, or None."""
    value = _json_field(text, "choice")
    return value if value in WILDBENCH_CHOICES else None


# ----------------------------------------------------------------------------------- Arena-Hard
ARENA_HARD_SYSTEM_PROMPT = "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the user prompt displayed below. You will be given assistant A's answer and assistant B's answer. Your job is to evaluate which assistant's answer is better.\n\nBegin your evaluation by generating your own answer to the prompt. You must provide your answers before judging any answers.\n\nWhen evaluating the assistants' answers, compare both assistants' answers with your answer. You must identify and correct any mistakes or inaccurate information.\n\nThen consider if the assistant's answers are helpful, relevant, and concise. Helpful means the answer correctly responds to the prompt or follows the instructions. Note when user prompt has any ambiguity or more than one interpretation, it is more helpful and appropriate to ask for clarifications or more information from the user than providing an answer based on assumptions. Relevant means all parts of the response closely connect or are appropriate to what is being asked. Concise means the response is clear and not verbose or excessive.\n\nThen consider the creativity and novelty of the assistant's answers when needed. Finally, identify any missing important information in the assistants' answers that would be beneficial to include when responding to the user prompt.\n\nAfter providing your explanation, you must output only one of the following choices as your final verdict with a label:\n\n1. Assistant A is significantly better: [[A>>B]]\n2. Assistant A is slightly better: [[A>B]]\n3. Tie, relatively the same: [[A=B]]\n4. Assistant B is slightly better: [[B>A]]\n5. Assistant B is significantly better: [[B>>A]]\n\nExample output: \"My final verdict is tie: [[A=B]]\"."
ARENA_HARD_TEMPLATE = "<|User Prompt|>\n{question_1}\n\n<|The Start of Assistant A's Answer|>\n{answer_1}\n<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n{answer_2}\n<|The End of Assistant B's Answer|>"
ARENA_HARD = JudgePrompt(
    name="arena-hard-v0.1",
    kind="pairwise",
    output_format="[[A>B]]",
    system_prompt=ARENA_HARD_SYSTEM_PROMPT,
    prompt_template=ARENA_HARD_TEMPLATE,
)
ARENA_HARD_PATTERNS = (re.compile(r"\[\[([AB<>=]+)\]\]"), re.compile(r"\[([AB<>=]+)\]"))
ARENA_HARD_LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")


def parse_arena_hard_verdict(text: str) -> str | None:
    """Arena-Hard's verdict label: the regex matches must agree on one label, else None
    (arena-hard-auto's `get_score`: no match or several different matches -> no battle)."""
    for pattern in ARENA_HARD_PATTERNS:
        matches = {m for m in pattern.findall(text) if m}
        if len(matches) == 1:
            label = matches.pop().strip("\n")
            return label if label in ARENA_HARD_LABELS else None
        if len(matches) > 1:
            return None
    return None


# ------------------------------------------------------------------------------------- MT-Bench
MT_BENCH = {
    "pair-v2": JudgePrompt(
        name="pair-v2",
        kind="pairwise",
        output_format="[[A]]",
        system_prompt='Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the user question displayed below. You should choose the assistant that follows the user\'s instructions and answers the user\'s question better. Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by comparing the two responses and provide a short explanation. Avoid any position biases and ensure that the order in which the responses were presented does not influence your decision. Do not allow the length of the responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as possible. After providing your explanation, output your final verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.',
        prompt_template="[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]",
    ),
    "pair-v2-multi-turn": JudgePrompt(
        name="pair-v2-multi-turn",
        kind="pairwise",
        output_format="[[A]]",
        system_prompt='Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the user questions. You should choose the assistant that follows the user\'s instructions and answers the user\'s questions better. Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of their responses. You should focus on who provides a better answer to the second user question. Begin your evaluation by comparing the responses of the two assistants and provide a short explanation. Avoid any position biases and ensure that the order in which the responses were presented does not influence your decision. Do not allow the length of the responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as possible. After providing your explanation, output your final verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.',
        prompt_template="<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n{answer_a_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_a_2}\n\n<|The End of Assistant A's Conversation with User|>\n\n\n<|The Start of Assistant B's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant B:\n{answer_b_1}\n\n### User:\n{question_2}\n\n### Assistant B:\n{answer_b_2}\n\n<|The End of Assistant B's Conversation with User|>",
    ),
    "pair-math-v1": JudgePrompt(
        name="pair-math-v1",
        kind="pairwise",
        output_format="[[A]]",
        system_prompt='Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the user question displayed below. Your evaluation should consider correctness and helpfulness. You will be given a reference answer, assistant A\'s answer, and assistant B\'s answer. Your job is to evaluate which assistant\'s answer is better. Begin your evaluation by comparing both assistants\' answers with the reference answer. Identify and correct any mistakes. Avoid any position biases and ensure that the order in which the responses were presented does not influence your decision. Do not allow the length of the responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as possible. After providing your explanation, output your final verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.',
        prompt_template="[User Question]\n{question}\n\n[The Start of Reference Answer]\n{ref_answer_1}\n[The End of Reference Answer]\n\n[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]",
    ),
    "pair-math-v1-multi-turn": JudgePrompt(
        name="pair-math-v1-multi-turn",
        kind="pairwise",
        output_format="[[A]]",
        system_prompt='Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the user questions. Your evaluation should consider correctness and helpfulness. You will be given reference answers, the assistant A\'s answers, the assistant B\'s answers. Your job is to determine which assistant provides correct and helpful answers to the second user question. Begin your evaluation by comparing both assistants\' answers with the reference answers. Identify and correct any mistakes. Avoid any position biases and ensure that the order in which the responses were presented does not influence your decision. Do not allow the length of the responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as possible. After providing your explanation, output your final verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.',
        prompt_template="<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n### Reference answer:\n{ref_answer_1}\n\n### User:\n{question_2}\n\n### Reference answer:\n{ref_answer_2}\n\n<|The End of Reference Answer|>\n\n\n<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n{answer_a_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_a_2}\n\n<|The End of Assistant A's Conversation with User|>\n\n\n<|The Start of Assistant B's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant B:\n{answer_b_1}\n\n### User:\n{question_2}\n\n### Assistant B:\n{answer_b_2}\n\n<|The End of Assistant B's Conversation with User|>",
    ),
    "single-v1": JudgePrompt(
        name="single-v1",
        kind="single",
        output_format="[[rating]]",
        system_prompt="You are a helpful assistant.",
        prompt_template='[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the user question displayed below. Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin your evaluation by providing a short explanation. Be as objective as possible. After providing your explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: "[[rating]]", for example: "Rating: [[5]]".\n\n[Question]\n{question}\n\n[The Start of Assistant\'s Answer]\n{answer}\n[The End of Assistant\'s Answer]',
    ),
    "single-math-v1": JudgePrompt(
        name="single-math-v1",
        kind="single",
        output_format="[[rating]]",
        system_prompt="You are a helpful assistant.",
        prompt_template="[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the user question displayed below. Your evaluation should consider correctness and helpfulness. You will be given a reference answer and the assistant's answer. Begin your evaluation by comparing the assistant's answer with the reference answer. Identify and correct any mistakes. Be as objective as possible. After providing your explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", for example: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n[The Start of Reference Answer]\n{ref_answer_1}\n[The End of Reference Answer]\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]",
    ),
    "single-v1-multi-turn": JudgePrompt(
        name="single-v1-multi-turn",
        kind="single",
        output_format="[[rating]]",
        system_prompt='Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the user question displayed below. Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. You evaluation should focus on the assistant\'s answer to the second user question. Begin your evaluation by providing a short explanation. Be as objective as possible. After providing your explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: "[[rating]]", for example: "Rating: [[5]]".\n\n',
        prompt_template="<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n{answer_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n\n<|The End of Assistant A's Conversation with User|>",
    ),
    "single-math-v1-multi-turn": JudgePrompt(
        name="single-math-v1-multi-turn",
        kind="single",
        output_format="[[rating]]",
        system_prompt='Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the user question. Your evaluation should consider correctness and helpfulness. You will be given a reference answer and the assistant\'s answer. You evaluation should focus on the assistant\'s answer to the second question. Begin your evaluation by comparing the assistant\'s answer with the reference answer. Identify and correct any mistakes. Be as objective as possible. After providing your explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: "[[rating]]", for example: "Rating: [[5]]".\n\n',
        prompt_template="<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n### Reference answer:\n{ref_answer_1}\n\n### User:\n{question_2}\n\n### Reference answer:\n{ref_answer_2}\n\n<|The End of Reference Answer|>\n\n\n<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n{answer_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n\n<|The End of Assistant A's Conversation with User|>",
    ),
}
# FastChat routes math/reasoning/coding to the reference-guided prompts.
MT_BENCH_REFERENCE_CATEGORIES = ("math", "reasoning", "coding")


def mt_bench_prompt_name(*, category: str, turn: int, pairwise: bool = False) -> str:
    """Which MT-Bench judge prompt FastChat uses for a question category and turn."""
    if turn not in (1, 2):
        raise ValueError(f"turn must be 1 or 2, got {turn}")
    base = (
        ("pair-math-v1" if pairwise else "single-math-v1")
        if category in MT_BENCH_REFERENCE_CATEGORIES
        else ("pair-v2" if pairwise else "single-v1")
    )
    return base + ("-multi-turn" if turn == 2 else "")
