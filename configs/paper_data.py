"""The data sets the paper presets name, with the record schema each is read in.

A paper preset's `data.train` / `data.eval` (or `iterate.prompts`) is a local path: download the
data set (e.g. `huggingface-cli download --repo-type dataset HuggingFaceH4/ultrafeedback_binarized`)
and write its split as JSONL — or point the key at the hub's Parquet files, which the readers
accept too (alignax/data/readers.py). Each entry below names the hub data set and split, its row
count (from its dataset card; it sets the preset's `total_steps`) and one record in the data set's
published format, which is the schema the preset's loader must accept: tests/test_paper_presets.py
writes that record to a file of the preset's path name and reads it back through the run's own
data path (`alignax.train.feed.load_split`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


@dataclasses.dataclass(frozen=True)
class PaperData:
    hub: str  # the data set on the Hugging Face hub
    split: str
    rows: int  # rows of that split (dataset card / viewer); 0 = not used for a step count
    task: str  # alignax.data.schemas task the records are read as
    example: dict[str, Any]  # one record in the published format (field names and types)
    source: str = ""  # where the format and the row count come from


def _chat(user: str, assistant: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


# UltraFeedback-binarized (H4): a prompt string plus full chosen/rejected conversations and scores.
_UF_BINARIZED = dict(
    prompt="Name a prime number between 10 and 20.",
    prompt_id="0b1c",
    chosen=_chat("Name a prime number between 10 and 20.", "13 is prime: its only divisors are 1 and 13."),
    rejected=_chat("Name a prime number between 10 and 20.", "15."),
    messages=_chat("Name a prime number between 10 and 20.", "13 is prime: its only divisors are 1 and 13."),
    score_chosen=9.0,
    score_rejected=3.0,
)

DATASETS: dict[str, PaperData] = {
    "ultrafeedback_binarized/train_prefs.jsonl": PaperData(
        "HuggingFaceH4/ultrafeedback_binarized",
        "train_prefs",
        61135,
        "preference",
        _UF_BINARIZED,
        "dataset card: train_prefs 61,135 rows; zephyr-7b-beta and SimPO Mistral-Base train on it",
    ),
    "ultrafeedback_binarized/test_prefs.jsonl": PaperData(
        "HuggingFaceH4/ultrafeedback_binarized", "test_prefs", 2000, "preference", _UF_BINARIZED, "dataset card"
    ),
    # SimPO v0.1 Llama-3-Instruct data: 5 on-policy samples per UltraFeedback prompt, PairRM best vs worst.
    "llama3_ultrafeedback/train.jsonl": PaperData(
        "princeton-nlp/llama3-ultrafeedback",
        "train",
        59900,
        "preference",
        _UF_BINARIZED,
        "SimPO README v0.1 (PairRM-annotated); same format as llama3-ultrafeedback-armorm",
    ),
    "llama3_ultrafeedback/test.jsonl": PaperData(
        "princeton-nlp/llama3-ultrafeedback", "test", 1960, "preference", _UF_BINARIZED, "SimPO README v0.1"
    ),
    # SimPO v0.2: the same prompts and samples re-annotated with ArmoRM-Llama3-8B-v0.1.
    "llama3_ultrafeedback_armorm/train.jsonl": PaperData(
        "princeton-nlp/llama3-ultrafeedback-armorm",
        "train",
        59900,
        "preference",
        _UF_BINARIZED,
        "dataset viewer: train 59.9k rows, test 1.96k; SimPO training_configs/llama-3-8b-instruct-simpo-v2.yaml",
    ),
    "llama3_ultrafeedback_armorm/test.jsonl": PaperData(
        "princeton-nlp/llama3-ultrafeedback-armorm", "test", 1960, "preference", _UF_BINARIZED, "dataset viewer"
    ),
    # ORPO: Argilla's cleaned UltraFeedback pairs (chosen/rejected conversations, a prompt string).
    "ultrafeedback_binarized_cleaned/train.jsonl": PaperData(
        "argilla/ultrafeedback-binarized-preferences-cleaned",
        "train",
        60917,
        "preference",
        dict(_UF_BINARIZED, source="evol_instruct", chosen_rating=5.0, rejected_rating=2.0),
        "xfactlab/orpo scripts/run_mistral_orpo_beta.sh; 'the 61k instances' (kaist-ai/mistral-orpo-beta card); "
        "60,917 rows [unverified]",
    ),
    # KTO: UltraFeedback-binarized split into unpaired examples, as TRL's KTO data (prompt,
    # completion, label): each pair gives one desirable and one undesirable example.
    "ultrafeedback_unpaired/train.jsonl": PaperData(
        "trl-lib/kto-mix-14k (format); HuggingFaceH4/ultrafeedback_binarized (content)",
        "train",
        2 * 61135,
        "unpaired",
        dict(
            prompt=[{"role": "user", "content": "Name a prime number between 10 and 20."}],
            completion=[{"role": "assistant", "content": "13 is prime."}],
            label=True,
        ),
        "KTO paper: paired data is split into one desirable and one undesirable example per pair",
    ),
    # Zephyr SFT: ultrachat_200k conversations.
    "ultrachat_200k/train_sft.jsonl": PaperData(
        "HuggingFaceH4/ultrachat_200k",
        "train_sft",
        207865,
        "sft",
        dict(prompt="Name a prime.", prompt_id="9f", messages=_chat("Name a prime.", "7 is prime.")),
        "dataset card: train_sft 207,865 rows; alignment-handbook recipes/zephyr-7b-beta/sft/config_full.yaml",
    ),
    "ultrachat_200k/test_sft.jsonl": PaperData(
        "HuggingFaceH4/ultrachat_200k",
        "test_sft",
        23110,
        "sft",
        dict(prompt="Name a prime.", prompt_id="9f", messages=_chat("Name a prime.", "7 is prime.")),
        "dataset card",
    ),
    # SoFT (Sorted LLaMA): Stanford Alpaca, as conversations (instruction + input as the user turn).
    "alpaca/train.jsonl": PaperData(
        "tatsu-lab/alpaca",
        "train",
        52002,
        "sft",
        dict(
            instruction="Name a prime.",
            input="",
            output="7 is prime.",
            messages=_chat("Name a prime.", "7 is prime."),
        ),
        "dataset card: 52,002 rows; convert instruction/input/output to `messages` before training",
    ),
    # CUT: judged responses (wwxu21/CUT data format: instruction, output, judgment, score).
    "judgments/train.jsonl": PaperData(
        "wwxu21/CUT (README data format)",
        "train",
        1317,
        "judgment",
        dict(
            prompt="Name a prime number between 10 and 20.",
            response="15.",
            judgment="Wrong: 15 = 3 x 5 is not prime.",
            score=2.0,
        ),
        "METHODS.md section 7: 1,317 judgment examples in the offline setting",
    ),
    # AlpacaFarm's pairwise preferences (simulated annotators with noise), as preference pairs.
    "alpaca_farm_preference/train.jsonl": PaperData(
        "tatsu-lab/alpaca_farm",
        "alpaca_noisy_multi_preference",
        9691,
        "preference",
        dict(
            instruction="Name a prime.",
            input="",
            prompt="Name a prime.",
            chosen="7 is prime.",
            rejected="8.",
            preference=1,
        ),
        "tatsu-lab/alpaca_farm README (alpaca_noisy_multi_preference); row count [unverified]",
    ),
    # Prompt pools of the on-policy loops (iterate.prompts): {"id"/"prompt_id", "prompt"}.
    "ultrafeedback_prompts.jsonl": PaperData(
        "openbmb/UltraFeedback (prompts); UCLA-AGI/data-mistral-7b-instruct-sppo-iter{1,2,3}",
        "train",
        60000,
        "prompts",
        dict(prompt_id="0b1c", prompt="Name a prime number between 10 and 20."),
        "uclaml/SPPO README: ~60k UltraFeedback prompts in three 20k splits",
    ),
    "rlhflow_iterative_prompts.jsonl": PaperData(
        "RLHFlow/iterative-prompt-v1-iter{1,2,3}-20K",
        "train",
        60000,
        "prompts",
        dict(context_messages=[{"role": "user", "content": "Name a prime."}], prompt="Name a prime."),
        "run_inpo_fixed.sh (METHODS.md section 5): 20k prompts per iteration, three iterations",
    ),
    "alpaca_farm_unlabeled.jsonl": PaperData(
        "tatsu-lab/alpaca_farm",
        "unlabeled",
        0,
        "prompts",
        dict(instruction="Name a prime.", input="", prompt="Name a prime."),
        "AlpacaFarm examples/scripts/expiter.sh: best-of-n on the 'unlabeled' split",
    ),
}


def steps(source: str, batch_size: int, epochs: float = 1.0) -> int:
    """Optimizer steps of `epochs` over data set `source` (a DATASETS key) at `batch_size`."""
    rows = DATASETS[source].rows
    if rows <= 0:
        raise ValueError(f"{source}: no row count declared")
    return math.ceil(epochs * rows / batch_size)
