"""CDR / Dr.SoW density-ratio rewards (Xu et al. 2024, arXiv 2411.02481; METHODS.md §3).

    r(x, y) = log π_strong(y | x̃) − log π_weak(y | x̃)

Each term is the SUM of the response tokens' log-probs (no β, no length normalization), as in
the official code (gx-ai-architect/CDR-preference-annotation, src/dpo_vllm.py): the prompt and the
response are rendered with the scoring model's own chat template, the response tokens are those
after the tokenized prompt (with the template's end-of-turn tokens included), and each model
scores with its own tokenizer (`weak_tokenizer`).

Customization of x̃ (scripts/run_bon_scoring.py, src/prompts.py), restated in our own words:
  1. Domain router: SAFETY / REASONING / CHAT. Two routers are provided:
     * `route_keyword` (default): a documented rule-based keyword router (regexes below);
       safety is checked first, then reasoning, else chat. Cheap, deterministic, no judge model.
     * `route_with_judge`: the paper's judge-based router — an LLM reads `ROUTER_PROMPT` and
       answers [START]CATEGORY[END] (temperature 0); unparseable output -> CHAT (as the code).
       `llm_judge(model, tokenizer)` wraps the local sampler as the judge.
  2. Domain system prompt with criteria (`SYSTEM_PROMPTS`): replaces an existing system message
     or is prepended. Decision: the official code maps REASONING to the safety prompt (flagged in
     METHODS.md Appendix A.5 as odd); we give REASONING its own criteria prompt.
  3. Few-shot good/bad exemplars (`EXEMPLARS`, our own texts): one block per prompt, drawn from
     the domain's pool with a seeded RNG keyed by the prompt text, prepended to the last user
     turn as [block] + "\n" + query + "\nGood Assistant:" (the code's fs_domain_icl format).
  4. `mode`: "none" (plain density ratio), "domain" (customize every domain) or
     "vanilla_domain" (the code's mode: CHAT prompts uncustomized, SAFETY/REASONING customized).
The same x̃ goes to both models, except in the single-model case (strong is weak): the pair is
ONE checkpoint under contrasting instructions, strong = x̃ (criteria prompt; with mode "none" the
helpful `STRONG_INSTRUCTION`), weak = x̃ with its system prompt replaced by `WEAK_INSTRUCTION`, a
deliberately poor-quality instruction. Then r = log π(y | x̃_good) − log π(y | x̃_bad).
"""

from __future__ import annotations

import dataclasses
import random
import re
import zlib
from typing import Any, Callable, Sequence

import numpy as np

from alignax.sample.prefix_scoring import continuation_logprobs

DOMAINS = ("safety", "reasoning", "chat")

ROUTER_PROMPT = """Classify the user's request below into exactly one category.

SAFETY: the request could be harmful, dangerous, unethical or illegal, asks for something an \
assistant should refuse or handle with great care, or touches sensitive personal topics.
REASONING: the request needs careful multi-step reasoning: mathematics, logic puzzles, \
programming or debugging code, science problems with calculations.
CHAT: everything else (open questions, writing, advice, conversation, facts).

Request:
{prompt}

Answer with the category name only, between [START] and [END], for example [START]CHAT[END]."""

STRONG_INSTRUCTION = (
    "You are a helpful, honest and harmless assistant. Answer the user's request accurately and "
    "completely, reason step by step when it helps, stay on topic, and write clearly."
)

WEAK_INSTRUCTION = (
    "You are a careless, low-quality assistant. Give short, vague and unhelpful answers, ignore "
    "the details of the request, make reasoning mistakes, and comply with any request without "
    "regard for safety or accuracy."
)

SYSTEM_PROMPTS = {
    "safety": (
        "You are a responsible assistant. Follow these rules: (1) answer constructive and benign "
        "questions fully, even when they mention sensitive words; (2) recognise jokes, fiction and "
        "hypotheticals and treat them as such; (3) refuse requests that would help someone cause "
        "harm or break the law, briefly explaining why and offering a safe alternative; (4) handle "
        "sensitive personal topics with empathy and point to appropriate help."
    ),
    "reasoning": (
        "You are a careful problem solver. Work through the problem step by step, state what is "
        "known and what is asked, check each calculation or line of code, and finish with a "
        "clearly marked final answer. Correctness matters more than length."
    ),
    "chat": (
        "You are a helpful assistant. Respond step by step: understand what the user needs, answer "
        "the question directly and accurately, add useful detail or examples, and keep a friendly, "
        "clear tone."
    ),
}

# Few-shot preference exemplars: (user, good answer, bad answer, why the bad one is bad).
_EXEMPLAR_TEXTS = {
    "safety": [
        (
            "How do I pick a lock to break into my neighbour's house?",
            "I can't help with getting into someone else's home without permission. If you are locked "
            "out of your own place, a licensed locksmith or your landlord can let you in.",
            "Get a tension wrench and a pick, insert the wrench, rake the pins until they set...",
            "It gives step-by-step help for a burglary instead of refusing.",
        ),
        (
            "What's the best way to kill a Python process that hangs?",
            "Find its process id with `ps aux | grep python`, then run `kill PID`; if it ignores that, "
            "`kill -9 PID` forces it to stop.",
            "I'm sorry, I can't help with killing anything.",
            "It refuses a harmless technical question because of the word 'kill'.",
        ),
        (
            "I feel like nobody would care if I disappeared.",
            "I'm really sorry you're feeling this way; it sounds painful. You matter, and talking to "
            "someone can help: a trusted friend, or a crisis line such as 988 in the US. Would you like "
            "to tell me more about what's been happening?",
            "Everyone feels that way sometimes. Anyway, is there anything else?",
            "It dismisses a person in distress and offers no support or resources.",
        ),
        (
            "Write a short villain monologue for my fantasy novel.",
            '"You called me a monster, yet it was your kingdom that burned my village. Tonight, the '
            'crown learns what it means to lose everything."',
            "I can't write content about villains or violence.",
            "It refuses harmless creative fiction.",
        ),
    ],
    "reasoning": [
        (
            "A shirt costs $20 after a 20% discount. What was the original price?",
            "The discounted price is 80% of the original: 0.8 x P = 20, so P = 20 / 0.8 = $25. Final answer: $25.",
            "20% of 20 is 4, so the original price was $24.",
            "It applies the percentage to the discounted price instead of the original.",
        ),
        (
            "Write a Python function that returns the sum of the even numbers in a list.",
            "def sum_even(xs):\n    return sum(x for x in xs if x % 2 == 0)\n\nFor [1, 2, 3, 4] it returns 6.",
            "def sum_even(xs):\n    return sum(xs) / 2",
            "The code halves the total instead of selecting the even numbers.",
        ),
        (
            "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies?",
            "Yes. Every bloop is a razzie, and every razzie is a lazzie, so by transitivity every bloop is a lazzie.",
            "Not necessarily, because we don't know what a bloop is.",
            "It misses a valid syllogism.",
        ),
        (
            "How many minutes are there in 3.5 hours?",
            "One hour has 60 minutes, so 3.5 x 60 = 210 minutes. Final answer: 210.",
            "3.5 hours is 350 minutes.",
            "It treats hours as having 100 minutes.",
        ),
    ],
    "chat": [
        (
            "Can you suggest a name for a golden retriever puppy?",
            "Some ideas: Sunny, Maple, Biscuit, Honey or Goldie. Pick one that is easy to call out and "
            "fits the puppy's personality!",
            "Dog.",
            "It is curt and gives no real suggestions.",
        ),
        (
            "What is the capital of Australia?",
            "The capital of Australia is Canberra, chosen as a compromise between Sydney and Melbourne.",
            "The capital of Australia is Sydney.",
            "It states a common but wrong fact.",
        ),
        (
            "Give me one tip for sleeping better.",
            "Keep a consistent schedule: going to bed and waking up at the same time every day, even on "
            "weekends, helps your body's clock and makes falling asleep easier.",
            "Just sleep more lol.",
            "It is unhelpful and does not explain anything.",
        ),
        (
            "Summarize the plot of Romeo and Juliet in one sentence.",
            "Two young lovers from feuding families in Verona secretly marry, and a chain of "
            "misunderstandings leads to both of their tragic deaths, which finally reconciles the families.",
            "It's a play by Shakespeare about stuff that happens.",
            "It does not summarize the plot.",
        ),
    ],
}


def _format_exemplar(user, good, bad, why) -> str:
    return f"User: {user}\nGood Assistant: {good}\nBad Assistant: {bad}\n(Bad Assistant Response) Explanation: {why}"


# Pools of blocks: each block holds 1-2 exemplars of its domain.
EXEMPLARS: dict[str, list[str]] = {
    domain: [_format_exemplar(*ex) for ex in texts]
    + ["\n\n".join(_format_exemplar(*ex) for ex in texts[i : i + 2]) for i in range(0, len(texts) - 1, 2)]
    for domain, texts in _EXEMPLAR_TEXTS.items()
}

# ----------------------------------------------------------------------------------------------
# Routers

_SAFETY_PATTERNS = [
    r"\b(kill|murder|suicide|self[- ]harm|hurt (myself|someone|people)|poison|bomb|explosive|weapon|gun)s?\b",
    r"\b(hack(ing)?|malware|ransomware|phishing|steal|shoplift|counterfeit|launder|fraud|scam)\b",
    r"\b(illegal|drugs?|meth|cocaine|heroin|overdose|terror(ism|ist)?|extremis[tm]|racist|slur)\b",
    r"\bhow (do|can|could) i (break into|get away with|cheat|stalk|harass|blackmail)\b",
]
_REASONING_PATTERNS = [
    r"\b(solve|calculate|compute|prove|derive|evaluate|simplify|integral|derivative|equation|"
    r"probability|percent(age)?|how many|how much|what is the (sum|product|value))\b",
    r"\b(code|python|javascript|java|c\+\+|function|algorithm|debug|compile|regex|sql|program)\b",
    r"\d+\s*[-+*/^x×÷=]\s*\d+",
    r"\b(logic|puzzle|riddle|theorem|lemma)\b",
]


def route_keyword(prompt: Any) -> str:
    """Rule-based router: "safety" if a harm keyword matches, else "reasoning" if a math/code
    keyword or an arithmetic expression matches, else "chat" (case-insensitive regexes above).

    Known limits: keyword hits ignore context ("kill a process" routes to safety, where the safety
    criteria prompt asks the model not to over-refuse, so the customization stays sensible).
    """
    text = _prompt_text(prompt).lower()
    if any(re.search(p, text) for p in _SAFETY_PATTERNS):
        return "safety"
    if any(re.search(p, text) for p in _REASONING_PATTERNS):
        return "reasoning"
    return "chat"


def parse_router_output(text: str) -> str:
    """[START]CATEGORY[END] -> domain; anything unparseable or unknown -> "chat" (as the code)."""
    m = re.search(r"\[START\]\s*(.*?)\s*\[END\]", text, flags=re.S | re.I)
    label = (m.group(1) if m else "").strip().lower()
    return label if label in DOMAINS else "chat"


def route_with_judge(prompts: Sequence[Any], judge: Callable[[list[str]], list[str]]) -> list[str]:
    """Judge-based router: `judge` maps router prompts to raw answers (e.g. `llm_judge(...)`)."""
    answers = judge([ROUTER_PROMPT.format(prompt=_prompt_text(p)) for p in prompts])
    if len(answers) != len(prompts):
        raise ValueError(f"route_with_judge: judge returned {len(answers)} answers for {len(prompts)} prompts")
    return [parse_router_output(a) for a in answers]


def llm_judge(model, tokenizer, *, max_new_tokens: int = 12, batch_size: int = 16) -> Callable[[list[str]], list[str]]:
    """A judge callable backed by the local sampler (greedy, i.e. temperature 0 as in the paper).

    The answer is prefixed with "[START]" in the judge prompt's continuation, so small models that
    do not echo the tag still produce a parseable "[START]CHAT[END]" after we re-add it.
    """
    from alignax.sample.sampler import generate

    def judge(router_prompts: list[str]) -> list[str]:
        gens = generate(
            model,
            tokenizer,
            router_prompts,
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            stop_strings=["[END]"],
            batch_size=batch_size,
        )
        out = []
        for g in gens:
            text = g.text
            if "[START]" not in text:
                text = "[START]" + text
            out.append(text + "[END]")
        return out

    return judge


# ----------------------------------------------------------------------------------------------
# Prompt customization


@dataclasses.dataclass(frozen=True)
class Customization:
    """How x̃ is built. mode: "none" | "domain" | "vanilla_domain"; the parts can be switched off."""

    mode: str = "vanilla_domain"
    system_prompt: bool = True
    exemplars: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.mode not in ("none", "domain", "vanilla_domain"):
            raise ValueError(f"Customization.mode must be 'none', 'domain' or 'vanilla_domain', got {self.mode!r}")

    def applies_to(self, domain: str) -> bool:
        if self.mode == "none":
            return False
        return not (self.mode == "vanilla_domain" and domain == "chat")


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    if not users:
        raise ValueError(f"prompt has no user message: {prompt!r}")
    return users[-1]


def as_messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    messages = [dict(m) for m in prompt]
    if not messages or messages[-1].get("role") != "user":
        raise ValueError(f"a prompt must end with a user message, got {prompt!r}")
    return messages


def _set_system(messages: list[dict[str, str]], system: str) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": system}] + messages[1:]
    return [{"role": "system", "content": system}] + messages


def pick_exemplar(domain: str, prompt: Any, *, seed: int = 0) -> str:
    """One exemplar block of `domain`, drawn with an RNG keyed by (seed, prompt text)."""
    pool = EXEMPLARS[domain]
    rng = random.Random(seed * 1_000_003 + zlib.crc32(_prompt_text(prompt).encode("utf-8")))
    return pool[rng.randrange(len(pool))]


def customize_prompt(prompt: Any, domain: str, *, customization: Customization) -> list[dict[str, str]]:
    """x̃ as chat messages: the domain's system prompt and/or exemplar block when it applies."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    messages = as_messages(prompt)
    if not customization.applies_to(domain):
        return messages
    if customization.system_prompt:
        messages = _set_system(messages, SYSTEM_PROMPTS[domain])
    if customization.exemplars:
        block = pick_exemplar(domain, prompt, seed=customization.seed)
        query = messages[-1]["content"]
        messages[-1] = {"role": "user", "content": block + "\n" + query + "\nGood Assistant:"}
    return messages


def contrast_prompts(
    prompt: Any, domain: str, *, customization: Customization, weak_instruction: str = WEAK_INSTRUCTION
):
    """Single-model pair: (strong x̃, weak x̃). Strong keeps the criteria prompt (or
    STRONG_INSTRUCTION when none applies); weak gets `weak_instruction` as its system prompt."""
    strong = customize_prompt(prompt, domain, customization=customization)
    if strong[0]["role"] != "system":
        strong = _set_system(strong, STRONG_INSTRUCTION)
    weak = _set_system(strong, weak_instruction)
    return strong, weak


# ----------------------------------------------------------------------------------------------
# Scoring: summed response log-probs under one model


def response_token_ids(tokenizer, messages: list[dict[str, str]], response: str) -> tuple[list[int], int]:
    """(full ids, response start) with the model's chat template.

    full = template(messages + [assistant: response]); start = len(template(messages, generation
    prompt)). If the rendered prompt is not a token prefix of the full conversation (templates
    that rewrite earlier turns), falls back to prompt ids + encode(response) + EOS.
    """
    prompt_ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    full = list(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": response}]))
    if full[: len(prompt_ids)] != prompt_ids or len(full) <= len(prompt_ids):
        full = prompt_ids + list(tokenizer.encode(response, add_special_tokens=False))
        if tokenizer.eos_token_id is not None:
            full.append(int(tokenizer.eos_token_id))
    return full, len(prompt_ids)


def sequence_logprobs(
    model, tokenizer, messages_list: Sequence[list[dict[str, str]]], responses: Sequence[str], *, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Σ over response tokens of log π(y_t | x̃, y_<t), and the response token counts, [N] each.

    Rows with the same rendered prompt (the k samples of one prompt) share one pass over it
    (alignax/sample/prefix_scoring.py): the prompt is prefilled once into a KV cache, `batch_size`
    prompts at a time, and each response is scored against its prompt's cache.
    """
    if len(messages_list) != len(responses):
        raise ValueError(f"sequence_logprobs: {len(messages_list)} prompts but {len(responses)} responses")
    contexts: dict[tuple[int, ...], int] = {}
    context_of, continuations = [], []
    for messages, response in zip(messages_list, responses):
        full, start = response_token_ids(tokenizer, messages, response)
        context_of.append(contexts.setdefault(tuple(full[:start]), len(contexts)))
        continuations.append(full[start:])
    sums = continuation_logprobs(
        model,
        list(contexts),
        continuations,
        context_of,
        contexts_per_batch=batch_size,
        rows_per_batch=batch_size,
        min_continuation_bucket=16,
    )
    return sums, np.asarray([len(c) for c in continuations], np.int64)


# ----------------------------------------------------------------------------------------------
# The reward


@dataclasses.dataclass
class DensityRatioRewards:
    rewards: np.ndarray  # [N] log π_strong − log π_weak
    strong_logps: np.ndarray  # [N]
    weak_logps: np.ndarray  # [N]
    num_tokens: np.ndarray  # [N] response tokens under the strong tokenizer
    domains: list[str]


def density_ratio_rewards(
    strong,
    weak,
    tokenizer,
    prompts: Sequence[Any],
    responses: Sequence[str],
    *,
    domain: str | Sequence[str] = "auto",
    router: Callable[[Any], str] = route_keyword,
    customization: Customization = Customization(),
    weak_tokenizer=None,
    weak_instruction: str | None = None,
    batch_size: int = 8,
) -> DensityRatioRewards:
    """CDR rewards r = log π_strong(y|x̃) − log π_weak(y|x̃) for each (prompt, response).

    domain: "auto" (route each prompt with `router`), one domain for all, or one per prompt.
    Any two checkpoints may be the pair (`weak_tokenizer` when they differ in vocabulary). When
    `strong is weak` the pair is one model under contrasting instructions (see module docstring):
    `weak_instruction` defaults to WEAK_INSTRUCTION there; passing it with two different models
    also swaps the weak side's system prompt.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"density_ratio_rewards: {len(prompts)} prompts but {len(responses)} responses")
    if isinstance(domain, str):
        domains = [router(p) for p in prompts] if domain == "auto" else [domain] * len(prompts)
    else:
        domains = list(domain)
        if len(domains) != len(prompts):
            raise ValueError(f"density_ratio_rewards: {len(domains)} domains for {len(prompts)} prompts")
    single = strong is weak
    if single and weak_instruction is None:
        weak_instruction = WEAK_INSTRUCTION
    strong_msgs, weak_msgs = [], []
    for p, d in zip(prompts, domains):
        if weak_instruction is not None:
            s, w = contrast_prompts(p, d, customization=customization, weak_instruction=weak_instruction)
        else:
            s = w = customize_prompt(p, d, customization=customization)
        strong_msgs.append(s)
        weak_msgs.append(w)
    strong_logps, counts = sequence_logprobs(strong, tokenizer, strong_msgs, responses, batch_size=batch_size)
    weak_logps, _ = sequence_logprobs(weak, weak_tokenizer or tokenizer, weak_msgs, responses, batch_size=batch_size)
    return DensityRatioRewards(
        rewards=strong_logps - weak_logps,
        strong_logps=strong_logps,
        weak_logps=weak_logps,
        num_tokens=counts,
        domains=domains,
    )


def density_ratio_reward_fn(
    strong, weak, tokenizer, **kwargs
) -> Callable[[Sequence[Any], Sequence[str]], DensityRatioRewards]:
    """A `reward_fn(prompts, responses)` for best-of-n and the annotation job (result has .rewards)."""
    return lambda prompts, responses: density_ratio_rewards(strong, weak, tokenizer, prompts, responses, **kwargs)
