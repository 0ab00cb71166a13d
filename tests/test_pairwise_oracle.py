"""The pairwise preference model (alignax/annotate/pairwise.py) and the oracles' one format."""

import json
import random

import numpy as np
import pytest

from alignax.annotate import oracles, pairwise

WORDS = "apple river stone cloud green quick seven paper music window garden silver".split()


def _toy(n, seed):
    """Chosen says 'yes', rejected 'no', after the same random filler: one learnable cue."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        filler = " ".join(rng.choice(WORDS) for _ in range(3))
        out.append(
            {
                "id": f"{seed}-{i}",
                "prompt": f"Answer about {rng.choice(WORDS)}.",
                "chosen": f"{filler} yes",
                "rejected": f"{filler} no",
            }
        )
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny random backbone + head, before and after the engine trains it on the toy set."""
    from alignax.models.reward_head import RewardModel
    from alignax.train import modeling
    from alignax.train.loop import train
    from configs import reward_model

    root = tmp_path_factory.mktemp("pairwise")
    path = pairwise.write_training_file(_toy(64, seed=0), str(root / "train.jsonl"))
    config = reward_model.get_config("tiny")
    config.unlock()
    config.data.train, config.data.eval, config.eval_batches = path, "", 0
    config.total_steps, config.batch_size, config.checkpoint_every = 40, 8, 40
    config.mesh.num_devices = 1
    config.lock()
    untrained_rm, tokenizer = modeling.build_model(config, modeling.make_mesh(config.mesh))
    before = pairwise.PairwisePreferenceModel(untrained_rm, tokenizer)
    train(config, str(root / "run"))
    after = pairwise.PairwisePreferenceModel.load(str(root / "run" / "export"))
    assert isinstance(after.rm, RewardModel)
    return before, after


def test_training_records_are_both_orders():
    (record,) = pairwise.training_records([{"prompt": "x", "chosen": "A", "rejected": "B"}])
    assert record["chosen"] == pairwise.compare_text("A", "B")
    assert record["rejected"] == pairwise.compare_text("B", "A")


def test_symmetry(trained):
    for model in trained:
        prompts, a, b = ["Say something."] * 3, ["yes it is", "short", "a b c"], ["no", "a much longer answer", "c b a"]
        forward, backward = model.prob(prompts, a, b), model.prob(prompts, b, a)
        np.testing.assert_allclose(forward + backward, 1.0, atol=1e-6)
        matrix = model.win_matrix("Say something.", a)
        np.testing.assert_allclose(matrix + matrix.T, 1.0, atol=1e-12)
        np.testing.assert_allclose(np.diag(matrix), 0.5)


def test_training_lifts_heldout_accuracy_above_chance(trained):
    before, after = trained
    heldout = _toy(32, seed=1)
    acc_before, acc_after = pairwise.accuracy(before, heldout), pairwise.accuracy(after, heldout)
    print(json.dumps({"heldout_accuracy_before": acc_before, "after": acc_after}))
    # chance is 0.5; 32 pairs: 0.8 is > 3 standard errors above it.
    assert acc_after >= 0.8 > acc_before - 0.2


def test_oracle_formats_agree():
    """Rule (ifeval) and pairwise oracles fill the same record: scores [K], P + Pᵀ = 1, P_ii = ½."""

    class Coin(oracles.PairwiseOracle):
        def prob(self, records, a, b):
            return np.asarray([0.9 if len(x) > len(y) else 0.2 for x, y in zip(a, b)])

    record = {
        "id": "p",
        "prompt": "Write in all lowercase letters.",
        "instruction_id_list": ["change_case:english_lowercase"],
        "kwargs": [{}],
    }
    groups = [["all lowercase here", "Not Lowercase", "also lowercase"]]
    for oracle in (oracles.build("ifeval", None, oracles.Context()), Coin()):
        (j,) = oracle.judge([record], groups)
        m = np.asarray(j["win_matrix"])
        assert len(j["scores"]) == 3 and m.shape == (3, 3)
        np.testing.assert_allclose(m + m.T, 1.0)
        np.testing.assert_allclose(np.diag(m), 0.5)
    (rule,) = oracles.build("ifeval", None, oracles.Context()).judge([record], groups)
    assert rule["scores"] == [1.0, 0.0, 1.0] and rule["win_matrix"][0][1] == 1.0 and rule["win_matrix"][0][2] == 0.5
    assert oracles.win_probs(rule["win_matrix"])[1] == pytest.approx(0.5 / 3)
