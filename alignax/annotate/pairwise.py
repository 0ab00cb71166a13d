"""A pairwise preference model, like PairRM: reads (x, y1, y2) and outputs P(y1 ≻ y2 | x).

PairRM (Jiang, Ren and Lin, 2023, "LLM-Blender"; the SPPO oracle, METHODS.md §4) encodes the
prompt and BOTH candidates together, so it can compare them directly instead of scoring each
alone. Here a backbone plus a scalar head (`alignax.models.reward_head.RewardModel`) reads the
conversation [user: x, assistant: compare(y1, y2)] and returns a logit s(x, y1, y2), and

    P(y1 ≻ y2 | x) = σ( s(x, y1, y2) − s(x, y2, y1) )                         (order-symmetrized)

so P(y1 ≻ y2) + P(y2 ≻ y1) = 1 exactly, whatever the head learned about positions (PairRM and
RLHFlow's pair-preference model average both presentation orders for the same reason).

Training with the engine: a preference record {prompt, chosen, rejected} becomes the reward-model
record {prompt, chosen: compare(chosen, rejected), rejected: compare(rejected, chosen)}
(`training_records`); the engine's `reward_model` method with the Bradley–Terry loss `reward_bt`,
−log σ(r_w − r_l), then minimizes exactly −log P(chosen ≻ rejected) of the formula above
(configs/reward_model.py, e.g. `--config.data.train=DIR/pairwise_train.jsonl`). The export is a
sequence-classification folder that `PairwisePreferenceModel.load` reads back.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from alignax import files
from alignax.annotate.reward_model import reward_model_rewards

TEMPLATE = "[Response A]\n{a}\n[Response B]\n{b}\n[Which response is better?]"


def compare_text(response_a: str, response_b: str) -> str:
    """The assistant turn the model reads for the ordered pair (a, b)."""
    return TEMPLATE.format(a=response_a, b=response_b)


def training_records(preferences: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Preference records -> reward-model records whose Bradley–Terry loss is −log P(chosen ≻ rejected)."""
    out = []
    for i, r in enumerate(preferences):
        if not all(isinstance(r.get(k), str) for k in ("prompt", "chosen", "rejected")):
            raise ValueError(f"pairwise.training_records: record {i} needs string prompt/chosen/rejected")
        out.append(
            {
                "id": str(r.get("id", i)),
                "prompt": r["prompt"],
                "chosen": compare_text(r["chosen"], r["rejected"]),
                "rejected": compare_text(r["rejected"], r["chosen"]),
            }
        )
    return out


def write_training_file(preferences: Iterable[dict[str, Any]], path: str) -> str:
    from alignax import files

    files.write_jsonl_atomic(path, training_records(preferences))
    return path


class PairwisePreferenceModel:
    """P(y1 ≻ y2 | x) from a `RewardModel` reading both responses (module docstring)."""

    def __init__(self, rm, tokenizer, *, batch_size: int = 8):
        self.rm, self.tokenizer, self.batch_size = rm, tokenizer, batch_size

    @classmethod
    def load(cls, source: str, *, dtype=None, batch_size: int = 8, tokenizer=None) -> "PairwisePreferenceModel":
        """A trained folder (`save_reward_model_hf`) or any causal LM (fresh head) as the backbone."""
        from alignax.models.reward_head import RewardModel

        rm, loaded_tokenizer = RewardModel.from_pretrained(source, dtype=dtype)
        return cls(rm, tokenizer or loaded_tokenizer, batch_size=batch_size)

    def logits(self, prompts: Sequence[Any], responses_a: Sequence[str], responses_b: Sequence[str]) -> np.ndarray:
        """s(x, a, b) − s(x, b, a) per triple, both orders scored in one pass."""
        n = len(prompts)
        if not n == len(responses_a) == len(responses_b):
            raise ValueError("prompts, responses_a and responses_b must have the same length")
        texts = [compare_text(a, b) for a, b in zip(responses_a, responses_b)]
        texts += [compare_text(b, a) for a, b in zip(responses_a, responses_b)]
        scores = reward_model_rewards(self.rm, self.tokenizer, list(prompts) * 2, texts, batch_size=self.batch_size)
        return scores[:n] - scores[n:]

    def prob(self, prompts: Sequence[Any], responses_a: Sequence[str], responses_b: Sequence[str]) -> np.ndarray:
        """P(a ≻ b | x) per triple."""
        return 1.0 / (1.0 + np.exp(-self.logits(prompts, responses_a, responses_b)))

    def win_matrix(self, prompt: Any, responses: Sequence[str]) -> np.ndarray:
        """[K, K] with P[i, j] = P(y_i ≻ y_j | x), P[i, i] = ½, P + Pᵀ = 1 (each unordered pair scored once)."""
        k = len(responses)
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        matrix = np.full((k, k), 0.5)
        if pairs:
            p = self.prob([prompt] * len(pairs), [responses[i] for i, _ in pairs], [responses[j] for _, j in pairs])
            for (i, j), value in zip(pairs, p):
                matrix[i, j], matrix[j, i] = value, 1.0 - value
        return matrix


def accuracy(model: PairwisePreferenceModel, preferences: Sequence[dict[str, Any]]) -> float:
    """Fraction of records with P(chosen ≻ rejected) > ½."""
    p = model.prob(
        [r["prompt"] for r in preferences], [r["chosen"] for r in preferences], [r["rejected"] for r in preferences]
    )
    return float(np.mean(p > 0.5))


def read_preferences(path: str) -> list[dict[str, Any]]:
    return [record for _, record in files.read_jsonl_records(path)]
