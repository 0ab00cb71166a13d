"""Regenerate the built-in data: `python -m alignax.data.builtin.make_builtin [--out DIR]`.

Deterministic (seeded `random.Random`), written by the project, no downloads:

- prompts/train, prompts/heldout: ~200 varied instruction prompts (writing, advice, explanation,
  lists, comparisons, product copy, short factual) for on-policy sampling in the demo
  (task "prompts": records `{"id", "prompt"}`).
- arith_pairs/train, arith_pairs/eval: preference pairs whose chosen answer is verifiably right
  (arithmetic, comparison, counting, parity) and whose rejected answer is wrong in the same
  wording, so only correctness separates them (task "preference").
  Each pair carries the correctness oracle's numbers that the Nash-style losses read
  (`oracle_pair_fields`): SPPO's `chosen_win_probs`/`rejected_win_probs` and `chosen_pref_probs`.
- arith_unpaired/train: the same questions as KTO records (task "unpaired").
- arith_samples/train: K = 3 scored responses per question (right, wrong, a refusal) with the
  oracle's `rewards`, `win_probs`, CGPO's `feasible` and `baseline_rewards` (task "multi_sample").
- sft/train: a small SFT set of short conversations (task "sft").
- judgment/train, judgment/eval: CUT's (instruction, response, judgment, score) records (task
  "judgment") on fresh arithmetic questions (own seed: the sets above are unchanged). A response
  is right and plain (score 9), right but closed by a filler sign-off (score 3), or wrong (score
  2); the judgment names the fault in words, so the held-out check can count both faults.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random

from alignax.data.builtin import BUILTIN_DIR, builtin_file_name

SEED = 20240601

TOPICS = [
    "the ocean",
    "autumn leaves",
    "a lighthouse",
    "city traffic",
    "a lost key",
    "morning coffee",
    "a mountain trail",
    "an old library",
    "the first snow",
    "a robot learning to paint",
    "a quiet train station",
    "a summer storm",
]
ACTIVITIES = [
    "learning a new language",
    "running a first 5k",
    "keeping a houseplant alive",
    "saving money each month",
    "sleeping better",
    "preparing for a job interview",
    "studying for an exam",
    "cooking for a crowd",
    "starting to journal",
    "working from home",
    "making new friends in a new city",
    "reading more books",
]
CONCEPTS = [
    "photosynthesis",
    "compound interest",
    "how vaccines work",
    "why the sky is blue",
    "what a black hole is",
    "how a rainbow forms",
    "what inflation is",
    "how a bicycle stays upright",
    "what DNA does",
    "how the internet routes data",
    "why we have seasons",
    "what gravity is",
]
CATEGORIES = [
    "fruits that are high in vitamin C",
    "board games for families",
    "ways to reduce plastic use",
    "famous classical composers",
    "habits of productive people",
    "animals that live in the desert",
    "questions to ask on a first date",
    "inexpensive hobbies",
    "tips for writing clear emails",
    "things to pack for a camping trip",
    "vegetables that grow fast",
    "indoor exercises",
]
FACTS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is the boiling point of water at sea level in Celsius?",
    "Who wrote 'Romeo and Juliet'?",
    "What is the largest planet in the solar system?",
    "How many days are in a leap year?",
    "What gas do plants absorb from the air?",
    "What is the chemical symbol for gold?",
    "How many continents are there?",
    "What is the freezing point of water in Fahrenheit?",
    "Which ocean is the largest?",
    "What language is spoken in Brazil?",
    "How many minutes are in a day?",
    "What is the tallest mountain on Earth?",
    "What is the square root of 81?",
    "Which planet is known as the Red Planet?",
    "How many sides does a hexagon have?",
    "What is the main ingredient of guacamole?",
]

WRITING = [
    "Write a short poem about {t}.",
    "Write a two-sentence story about {t}.",
    "Describe {t} in one vivid paragraph.",
    "Write a haiku about {t}.",
]
ADVICE = [
    "Give me three tips for {a}.",
    "What is the most common mistake people make when {a}?",
    "How should a beginner approach {a}?",
]
EXPLAIN = ["Explain {c} in simple terms.", "Explain {c} to a ten-year-old.", "In two sentences, explain {c}."]
PRODUCTS = [
    "a reusable water bottle",
    "noise-cancelling headphones",
    "a standing desk",
    "a solar phone charger",
    "a cast-iron skillet",
    "a hiking backpack",
    "a smart thermostat",
    "a fountain pen",
    "a yoga mat",
    "an electric kettle",
    "a weather radio",
    "a bird feeder",
]
COMPARISONS = [
    ("cats", "dogs as pets"),
    ("trains", "planes for a 500 km trip"),
    ("paper books", "e-readers"),
    ("tea", "coffee"),
    ("renting", "buying a home"),
    ("running", "swimming for fitness"),
    ("email", "phone calls for work"),
    ("solar", "wind power"),
    ("city life", "country life"),
    ("handwriting notes", "typing notes"),
    ("public transport", "driving to work"),
    ("baking", "frying"),
]
MORE_FACTS = [
    "How many hours are in a week?",
    "What is the smallest prime number?",
    "Which animal is the largest mammal?",
    "What is the capital of Japan?",
    "How many strings does a standard guitar have?",
    "What is the opposite of 'ancient'?",
    "How many zeros are in one million?",
    "What color do you get by mixing blue and yellow?",
    "What is 15 percent of 200?",
    "Which month has the fewest days?",
]
LISTS = ["List five {k}.", "Name three {k} and say one thing about each."]


def make_prompts(rng: random.Random) -> list[str]:
    prompts = [w.format(t=t) for w in WRITING for t in TOPICS]
    prompts += [a.format(a=x) for a in ADVICE for x in ACTIVITIES]
    prompts += [e.format(c=c) for e in EXPLAIN for c in CONCEPTS]
    prompts += [l.format(k=k) for l in LISTS for k in CATEGORIES]
    prompts += [f"Write a short product description for {x}." for x in PRODUCTS]
    prompts += [f"Compare {a} and {b} in a few sentences." for a, b in COMPARISONS]
    prompts += FACTS + MORE_FACTS
    prompts = sorted(set(prompts))
    rng.shuffle(prompts)
    return prompts


WORDS = [
    "strawberry",
    "banana",
    "committee",
    "mississippi",
    "bookkeeper",
    "balloon",
    "letter",
    "coffee",
    "parallel",
    "assessment",
]


def make_arith_question(rng: random.Random) -> tuple[str, str, str]:
    """(question, correct answer, wrong answer) of a randomly chosen kind."""
    kind = rng.choice(["add", "sub", "mul", "compare", "count", "parity"])
    if kind == "add":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        right = a + b
        return (
            f"What is {a} + {b}?",
            f"{a} + {b} = {right}.",
            f"{a} + {b} = {right + rng.choice([-10, -2, -1, 1, 2, 10])}.",
        )
    if kind == "sub":
        a, b = rng.randint(50, 99), rng.randint(10, 49)
        right = a - b
        return f"What is {a} - {b}?", f"{a} - {b} = {right}.", f"{a} - {b} = {right + rng.choice([-10, -1, 1, 10])}."
    if kind == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        right = a * b
        return (
            f"What is {a} times {b}?",
            f"{a} times {b} is {right}.",
            f"{a} times {b} is {right + rng.choice([-a, -1, 1, b])}.",
        )
    if kind == "compare":
        a, b = rng.sample(range(10, 1000), 2)
        big, small = max(a, b), min(a, b)
        return (
            f"Which number is larger, {a} or {b}?",
            f"{big} is larger than {small}.",
            f"{small} is larger than {big}.",
        )
    if kind == "count":
        word = rng.choice(WORDS)
        letter = rng.choice(sorted(set(word)))
        right = word.count(letter)
        wrong = right + rng.choice([1, 2]) if right == 1 else right + rng.choice([-1, 1])
        times = lambda k: "once" if k == 1 else f"{k} times"  # noqa: E731
        return (
            f"How many times does the letter '{letter}' appear in the word '{word}'?",
            f"The letter '{letter}' appears {times(right)} in '{word}'.",
            f"The letter '{letter}' appears {times(wrong)} in '{word}'.",
        )
    n = rng.randint(10, 999)
    parity, other = ("even", "odd") if n % 2 == 0 else ("odd", "even")
    return f"Is {n} even or odd?", f"{n} is {parity}.", f"{n} is {other}."


def make_arith(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    seen, out = set(), []
    while len(out) < n:
        q = make_arith_question(rng)
        if q[0] not in seen:
            seen.add(q[0])
            out.append(q)
    return out


def make_sft(rng: random.Random, prompts: list[str], n: int) -> list[dict]:
    records = []
    for i, (question, answer, _) in enumerate(make_arith(rng, n // 2)):
        records.append(
            {
                "id": f"sft-arith-{i}",
                "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            }
        )
    for i in range(n - len(records)):
        word = rng.choice(WORDS)
        k = rng.randint(2, 4)
        messages = [
            {"role": "user", "content": f"Repeat the word '{word}' {k} times, separated by spaces."},
            {"role": "assistant", "content": " ".join([word] * k)},
        ]
        if i % 3 == 0:  # some two-turn conversations, so the loss mask covers several assistant turns
            messages += [
                {"role": "user", "content": "Now spell it backwards."},
                {"role": "assistant", "content": word[::-1]},
            ]
        records.append({"id": f"sft-repeat-{i}", "messages": messages})
    rng.shuffle(records)
    return records


def oracle_win_probs(rewards: list[float]) -> list[float]:
    """SPPO's estimate P(y_k > pi) = (1/K) sum_j P(y_k > y_j) over the K samples of a prompt, with the
    correctness oracle's P(a > b) = 1, 0 or 1/2 (equal rewards; a sample against itself is a tie)."""

    def beats(a, b):
        return 1.0 if a > b else 0.0 if a < b else 0.5

    return [sum(beats(a, b) for b in rewards) / len(rewards) for a in rewards]


def oracle_pair_fields() -> dict:
    """A (right, wrong) pair under the correctness oracle: the pair's own win probabilities and
    P(chosen > rejected)."""
    chosen_win, rejected_win = oracle_win_probs([1.0, 0.0])
    return {"chosen_win_probs": chosen_win, "rejected_win_probs": rejected_win, "chosen_pref_probs": 1.0}


REFUSAL = "I am not sure."


def make_samples(arith: list[tuple[str, str, str]], seed: int) -> list[dict]:
    """K = 3 responses per question in a seeded order, scored by correctness (a refusal is not
    correct but is feasible: it states nothing false). The baseline reward is that of the refusal,
    the safe reference answer CGPO calibrates against."""
    rng = random.Random(seed)
    records = []
    for i, (question, right, wrong) in enumerate(arith):
        scored = [(right, 1.0, 1.0), (wrong, 0.0, 0.0), (REFUSAL, 0.0, 1.0)]
        rng.shuffle(scored)
        rewards = [reward for _, reward, _ in scored]
        records.append(
            {
                "id": f"arith-samples-{i}",
                "prompt": question,
                "responses": [r for r, _, _ in scored],
                "rewards": rewards,
                "win_probs": oracle_win_probs(rewards),
                "feasible": [f for _, _, f in scored],
                "baseline_rewards": [0.0] * len(scored),
            }
        )
    return records


FILLER = "I hope this helps! Let me know if you have any other questions."
JUDGMENT_KINDS = (("right", 0.35), ("filler", 0.45), ("wrong", 0.20))


def make_judgment(question: str, right: str, wrong: str, kind: str) -> tuple[str, str, float]:
    """(response, judgment, score) of one kind: a right plain answer, a right one closed by the
    filler sign-off, or a wrong one; the judgment says what is wrong in words."""
    if kind == "right":
        return right, "The answer is correct and concise.", 9.0
    if kind == "filler":
        return (
            f"{right} {FILLER}",
            f"The answer is correct, but the closing '{FILLER}' is unnecessary filler; "
            "the response should end right after the answer.",
            3.0,
        )
    return wrong, f"The answer is wrong. The correct answer is: {right}", 2.0


def make_judgments(seed: int, n: int) -> list[dict]:
    """CUT judgment records on `n` fresh arithmetic questions (their own seeded generator)."""
    rng = random.Random(seed)
    kinds, weights = zip(*JUDGMENT_KINDS)
    records = []
    for i, (question, right, wrong) in enumerate(make_arith(rng, n)):
        kind = rng.choices(kinds, weights)[0]
        response, judgment, score = make_judgment(question, right, wrong, kind)
        records.append(
            {
                "id": f"judgment-{i}",
                "prompt": question,
                "response": response,
                "judgment": judgment,
                "score": score,
                "kind": kind,
            }
        )
    return records


def build() -> dict[str, tuple[str, list[dict]]]:
    """{name: (task, records)} for every built-in dataset."""
    rng = random.Random(SEED)
    prompts = make_prompts(rng)
    n_heldout = len(prompts) // 5
    prompt_records = [{"id": f"prompt-{i}", "prompt": p} for i, p in enumerate(prompts)]
    arith = make_arith(rng, 480)
    pairs = [
        {"id": f"arith-{i}", "prompt": q, "chosen": right, "rejected": wrong, **oracle_pair_fields()}
        for i, (q, right, wrong) in enumerate(arith)
    ]
    unpaired = []
    for i, (q, right, wrong) in enumerate(arith[:400]):
        good = rng.random() < 0.5
        unpaired.append({"id": f"arith-kto-{i}", "prompt": q, "completion": right if good else wrong, "label": good})
    return {
        "prompts/train": ("prompts", prompt_records[n_heldout:]),
        "prompts/heldout": ("prompts", prompt_records[:n_heldout]),
        "arith_pairs/train": ("preference", pairs[:400]),
        "arith_pairs/eval": ("preference", pairs[400:]),
        "arith_unpaired/train": ("unpaired", unpaired),
        "arith_samples/train": ("multi_sample", make_samples(arith[:240], SEED + 1)),
        "sft/train": ("sft", make_sft(rng, prompts, 80)),
        # Appended last with their own seed: the datasets above do not change.
        **_judgment_sets(),
    }


def _judgment_sets() -> dict[str, tuple[str, list[dict]]]:
    records = make_judgments(SEED + 2, 400)
    return {"judgment/train": ("judgment", records[:340]), "judgment/eval": ("judgment", records[340:])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=BUILTIN_DIR)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    datasets = {}
    for name, (task, records) in build().items():
        text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
        with open(os.path.join(args.out, builtin_file_name(name)), "w", encoding="utf-8") as f:
            f.write(text)
        datasets[name] = {
            "task": task,
            "num_records": len(records),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
        print(f"{name:24s} {task:11s} {len(records):4d} records")
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(
            {"seed": SEED, "generator": "python -m alignax.data.builtin.make_builtin", "datasets": datasets},
            f,
            indent=1,
            sort_keys=True,
        )
        f.write("\n")


if __name__ == "__main__":
    main()
