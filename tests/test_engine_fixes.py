"""Fixes from the issue "Engine v2" (items 4-6): CGPO formulas, finite gradients for masked rows,
out-of-range labels, L-Eval exact match, checkpoint restore, bad input files, scikit-learn versions.

Expected values are hand-computed or restated independently of the code under test (numpy
formulas from the cited sources); every test here fails on the code before the fix.
"""

from __future__ import annotations

import contextlib
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import alignax.losses as losses
from alignax.evaluate import leval
from alignax.losses import cgpo


def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


# ----------------------------------------------------------------------------------------------
# 1. CGPO (Xu et al. 2024, arXiv 2409.20370; TRL's CGPO trainer as the code reference)


def test_crpg_scales_by_kl_factor_and_subtracts_batch_mean():
    logps = np.array([-4.0, -6.0], np.float32)
    ref = np.array([-5.0, -6.0], np.float32)  # KL = 1 and 0; KL_max = 4: factors 0.75 and 1
    rewards = np.array([0.0, 0.0], np.float32)
    baseline = np.array([0.0, 0.0], np.float32)  # R_calib = 0.5 for both
    feasible = np.array([True, True])
    loss, _ = cgpo.crpg(
        logps=logps, ref_logps=ref, rewards=rewards, baseline_rewards=baseline, feasible=feasible, kl_threshold=4.0
    )
    # R = (0.375, 0.5), mean 0.4375, advantages (-0.0625, 0.0625)
    expected = -((-0.0625) * -4.0 + 0.0625 * -6.0) / 2
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_crpg_requires_a_kl_threshold():
    params = inspect.signature(cgpo.crpg).parameters
    assert params["kl_threshold"].default is inspect.Parameter.empty
    with pytest.raises(ValueError, match="kl_threshold"):
        cgpo.crpg(
            logps=np.zeros(2, np.float32),
            ref_logps=np.zeros(2, np.float32),
            rewards=np.zeros(2, np.float32),
            baseline_rewards=np.zeros(2, np.float32),
            feasible=np.ones(2, bool),
            kl_threshold=0.0,
        )


def test_codpo_default_nll_weight_is_five():
    loss, _ = cgpo.codpo(
        chosen_logps=np.array([-8.0], np.float32),
        rejected_logps=np.array([-8.0], np.float32),
        ref_chosen_logps=np.array([-8.0], np.float32),
        ref_rejected_logps=np.array([-8.0], np.float32),
        chosen_lengths=np.array([4.0], np.float32),
    )
    # h = 0: DPO term log 2; NLL term (5/4)·8 = 10
    assert float(loss) == pytest.approx(math.log(2.0) + 10.0, rel=1e-6)


def test_crraft_sums_log_probs_by_default():
    loss, _ = cgpo.crraft(
        logps=np.array([-12.0], np.float32),
        lengths=np.array([4.0], np.float32),
        rewards=np.array([0.0], np.float32),
        baseline_rewards=np.array([0.0], np.float32),
        feasible=np.array([True]),
    )
    assert float(loss) == pytest.approx(0.5 * 12.0, rel=1e-6)


# ----------------------------------------------------------------------------------------------
# 4. L-Eval exact match: the whole prediction (upstream em.py at HEAD, EVALUATION.md §5)


def test_leval_exact_match_reads_every_line():
    # The answer is on the second line; the first line is a preamble longer than one character.
    assert leval.exact_match_score("Let me think about it.\nThe capital is Paris", "Paris") == 1.0
    assert leval.exact_match_score("Sure!\nanswer: 42 apples", "42 apples") == 1.0
    assert leval.exact_match_score("Let me think.\nRome", "Paris") == 0.0


# ----------------------------------------------------------------------------------------------
# 2. Finite gradients for a masked zero-length row (double-where: safe denominators first)

_LOGP_INPUTS = ("chosen_logps", "rejected_logps", "logps")


def _masked_zero_length_batch(params):
    """Row 0 is padding: zero length, zero log-probs, example_mask 0. Rows 1-3 are ordinary."""
    batch = {
        "chosen_logps": np.array([0.0, -12.0, -9.0, -20.0], np.float32),
        "rejected_logps": np.array([0.0, -15.0, -8.0, -26.0], np.float32),
        "ref_chosen_logps": np.array([0.0, -12.5, -9.5, -19.0], np.float32),
        "ref_rejected_logps": np.array([0.0, -14.0, -8.5, -25.0], np.float32),
        "chosen_lengths": np.array([0.0, 6.0, 3.0, 10.0], np.float32),
        "rejected_lengths": np.array([0.0, 5.0, 4.0, 13.0], np.float32),
        "logps": np.array([0.0, -12.0, -9.0, -20.0], np.float32),
        "ref_logps": np.array([0.0, -12.5, -9.5, -19.0], np.float32),
        "desirable": np.array([True, True, False, True]),
        "kl_baseline": np.float32(0.1),
        "example_mask": np.array([0.0, 1.0, 1.0, 1.0], np.float32),
    }
    return {key: value for key, value in batch.items() if key in params}


def _names_with_example_mask():
    return [name for name in losses.names() if "example_mask" in inspect.signature(losses.get(name)).parameters]


def test_every_loss_with_example_mask_is_probed():
    # The ones the issue names, and no loss that takes example_mask is left out of the probe below.
    names = _names_with_example_mask()
    for name in ("ipo", "ln_dpo", "simpo", "cpo", "orpo", "kto", "sigmoid"):
        assert name in names
    for name in names:
        params = inspect.signature(losses.get(name)).parameters
        required = [p for p, spec in params.items() if spec.default is inspect.Parameter.empty]
        assert set(required) <= set(_masked_zero_length_batch(params)), (name, required)


_EXTRA_HPARAMS = {
    "ipo": [dict(length_normalize=True), dict(length_normalize=False)],
    "cpo": [dict(loss_type=t) for t in ("sigmoid", "simpo", "hinge", "ipo")],
    "simpo": [dict(), dict(sft_weight=1.0), dict(loss_type="hinge")],
}


@pytest.mark.parametrize("name", _names_with_example_mask())
def test_masked_zero_length_row_has_finite_zero_gradient(name):
    fn = losses.get(name)
    params = inspect.signature(fn).parameters
    batch = _masked_zero_length_batch(params)
    wrt = [key for key in _LOGP_INPUTS if key in batch]
    for hparams in _EXTRA_HPARAMS.get(name, [dict()]):

        def loss_of(arrays):
            return fn(**{**batch, **arrays}, **hparams)[0]

        loss = loss_of({key: jnp.asarray(batch[key]) for key in wrt})
        assert np.isfinite(float(loss)), (name, hparams)
        grads = jax.grad(loss_of)({key: jnp.asarray(batch[key]) for key in wrt})
        for key, grad in grads.items():
            grad = np.asarray(grad)
            assert np.all(np.isfinite(grad)), (name, hparams, key, grad)
            assert grad[0] == 0.0, (name, hparams, key, grad)
            assert np.any(grad[1:] != 0.0), (name, hparams, key, grad)


# ----------------------------------------------------------------------------------------------
# 3. Labels out of range (alignax/ops/logprobs.py)

from alignax.ops import logprobs as lp_ops  # noqa: E402

_V = 11


def _logprob_problem():
    key_h, key_w = jax.random.split(jax.random.PRNGKey(3))
    hidden = jax.random.normal(key_h, (2, 5, 4), jnp.float32)
    head = jax.random.normal(key_w, (4, _V), jnp.float32)
    labels = np.array([[1, 2, 3, -100, 4], [5, _V, 0, 1, 2]], np.int32)  # [1, 1] is out of range
    mask = np.ones((2, 5), np.float32)
    return hidden, head, labels, mask


@pytest.mark.parametrize("vocab_chunk_size", [None, 4])
def test_out_of_range_label_raises_outside_jit(vocab_chunk_size):
    hidden, head, labels, mask = _logprob_problem()
    with pytest.raises(ValueError, match=r"label 11 at position \(1, 1\).*vocabulary of 11"):
        lp_ops.token_logprobs(hidden, head, labels, mask, chunk_size=2, vocab_chunk_size=vocab_chunk_size)
    with pytest.raises(ValueError, match="out of range"):
        lp_ops.token_logprobs_naive(hidden, head, labels, mask)
    with pytest.raises(ValueError, match="out of range"):
        lp_ops.logprobs_from_logits(jnp.einsum("btd,dv->btv", hidden, head), labels, mask)
    # Where that position is masked out, the label is never read: no error, exactly 0 there.
    mask[1, 1] = 0.0
    out = lp_ops.token_logprobs(hidden, head, labels, mask, chunk_size=2, vocab_chunk_size=vocab_chunk_size)
    assert np.all(np.isfinite(np.asarray(out))) and float(out[1, 1]) == 0.0


def test_out_of_range_label_is_nan_inside_jit_on_both_paths():
    hidden, head, labels, mask = _logprob_problem()
    for vocab_chunk_size in (None, 4, 5):
        fn = jax.jit(
            lambda h, w, l, m, v=vocab_chunk_size: lp_ops.token_logprobs(h, w, l, m, chunk_size=2, vocab_chunk_size=v)
        )
        out = np.asarray(fn(hidden, head, labels, mask))
        assert np.isnan(out[1, 1]), vocab_chunk_size
        finite = np.ones_like(out, bool)
        finite[1, 1] = False
        assert np.all(np.isfinite(out[finite])), vocab_chunk_size
        # Gradients stay finite when the NaN position is not used downstream.
        grad = jax.grad(lambda h: jnp.sum(jnp.nan_to_num(fn(h, head, labels, mask), nan=0.0)))(hidden)
        assert np.all(np.isfinite(np.asarray(grad))), vocab_chunk_size


@pytest.mark.parametrize("bad", [0, -1, -512])
def test_vocab_chunk_size_must_be_positive(bad):
    hidden, head, labels, mask = _logprob_problem()
    labels = np.clip(labels, -100, _V - 1)
    with pytest.raises(ValueError, match="vocab_chunk_size"):
        lp_ops.token_logprobs(hidden, head, labels, mask, chunk_size=2, vocab_chunk_size=bad)


# ----------------------------------------------------------------------------------------------
# 5. Checkpoints: restore deletes nothing; corrupt -> previous (warning); mismatch -> error

import os  # noqa: E402
import pathlib  # noqa: E402

from alignax.train import checkpoint as ckpt_lib  # noqa: E402


def _small_state(width=8):
    return {
        "params": {"w": jnp.arange(4 * width, dtype=jnp.float32).reshape(4, width), "b": jnp.ones(3)},
        "step": jnp.int32(0),
    }


def _two_checkpoints(directory):
    checkpointer = ckpt_lib.Checkpointer(str(directory), keep=3, async_save=False)
    for step in (1, 2):
        state = jax.tree.map(lambda x, s=step: x + s, _small_state())
        checkpointer.save(step, state, {"train": step})
    checkpointer.wait()
    return checkpointer


@contextlib.contextmanager
def _reopened(directory):
    """The run's directory opened again, closed afterwards (an open Orbax manager outlives the test)."""
    checkpointer = ckpt_lib.Checkpointer(str(directory), keep=3, async_save=False)
    try:
        yield checkpointer
    finally:
        checkpointer.close()


@pytest.mark.parametrize("how", ["truncate", "missing_files", "no_commit_marker"])
def test_corrupt_newest_checkpoint_is_skipped_with_a_warning_and_kept(tmp_path, capsys, how):
    _two_checkpoints(tmp_path).close()
    newest = tmp_path / "2"
    if how == "truncate":
        for path in (newest / "state").rglob("*"):
            if path.is_file():
                with open(path, "r+b") as f:
                    f.truncate(path.stat().st_size // 2)
    elif how == "missing_files":
        for path in list((newest / "state").rglob("d")):
            for file in path.iterdir():
                file.unlink()
    else:
        (newest / "commit_success.txt").unlink()
    with _reopened(tmp_path) as checkpointer:
        step, state, data = checkpointer.restore_latest(ckpt_lib.abstract_like(_small_state()))
        assert (step, data) == (1, {"train": 1})
        np.testing.assert_array_equal(state["params"]["b"], np.full(3, 2.0))
        out = capsys.readouterr().out
        assert f"WARNING: checkpoint step 2 in {tmp_path}" in out and "falling back" in out and str(newest) in out
        assert newest.is_dir()  # restore deletes nothing
        # The resumed run saves step 2 again: the unreadable one is moved aside, not deleted.
        checkpointer.save(2, _small_state(), {"train": 2})
    assert sorted(os.listdir(tmp_path), key=int) == ["1", "2"]
    aside = list(pathlib.Path(str(tmp_path) + ".unreadable").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith("2-")
    with _reopened(tmp_path) as checkpointer:
        assert checkpointer.restore_latest(ckpt_lib.abstract_like(_small_state()))[0] == 2


def test_changed_config_is_an_error_naming_the_key_and_deletes_nothing(tmp_path):
    _two_checkpoints(tmp_path).close()
    wrong_dtype = jax.tree.map(lambda x: x.astype(jnp.bfloat16) if x.dtype == jnp.float32 else x, _small_state())
    with _reopened(tmp_path) as checkpointer:
        with pytest.raises(ValueError, match=r"'params\.w'.*\(4, 8\) float32.*expects \(4, 5\) float32"):
            checkpointer.restore_latest(ckpt_lib.abstract_like(_small_state(width=5)))
        with pytest.raises(ValueError, match=r"'params\.b'.*float32.*bfloat16"):
            checkpointer.restore_latest(ckpt_lib.abstract_like(wrong_dtype))
    assert sorted(os.listdir(tmp_path), key=int) == ["1", "2"]


@pytest.mark.parametrize(
    "error",
    [
        MemoryError("RESOURCE_EXHAUSTED: out of memory"),
        OSError(5, "Input/output error"),
        RuntimeError("something else"),
    ],
)
def test_other_restore_errors_are_raised_and_delete_nothing(tmp_path, monkeypatch, error):
    _two_checkpoints(tmp_path).close()

    def failing_restore(*args, **kwargs):
        raise error

    with _reopened(tmp_path) as checkpointer:
        monkeypatch.setattr(checkpointer.manager, "restore", failing_restore)
        with pytest.raises(type(error)):
            checkpointer.restore_latest(ckpt_lib.abstract_like(_small_state()))
    assert sorted(os.listdir(tmp_path), key=int) == ["1", "2"]


# ----------------------------------------------------------------------------------------------
# 6. Bad input: empty files, rows that cannot fit (alignax/data)

from alignax.data import DataError  # noqa: E402
from alignax.data.readers import load_dataset, write_jsonl  # noqa: E402
from alignax.data.tokenize import TruncationConfig, tokenize_dataset  # noqa: E402


class _CharTokenizer:
    """One token per character (id = code point + 3); 1 = BOS, 2 = EOS/end-of-turn (special)."""

    bos_token_id, eos_token_id, vocab_size, chat_template = 1, 2, 1 << 20, "char"

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=False):
        text = "".join(f"[{m['role']}]{m['content']}\x02" for m in messages)
        return text + ("[assistant]" if add_generation_prompt else "")

    def encode(self, text, add_special_tokens=False):
        return [2 if ch == "\x02" else ord(ch) + 3 for ch in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(
            "" if i in (1, 2) and skip_special_tokens else ("\x02" if i == 2 else chr(max(i - 3, 0))) for i in ids
        )


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_data_file_is_an_error_naming_it(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    for policy in ("error", "skip"):
        with pytest.raises(DataError, match=r"empty\.jsonl: the data file contains no records"):
            load_dataset(str(path), task="preference", on_error=policy)


def _long_prompt_file(tmp_path, *, prompt_chars=100_000, extra_rows=0):
    path = tmp_path / "long.jsonl"
    rows = [{"prompt": "x" * prompt_chars, "chosen": "yes", "rejected": "no"}]
    rows += [{"prompt": f"q{i}", "chosen": "yes", "rejected": "no"} for i in range(extra_rows)]
    write_jsonl(rows, str(path))
    return path


TRUNC = TruncationConfig(max_length=64, max_prompt_length=48)  # the tiny configs' limits


def test_row_over_the_hard_cap_is_an_error_naming_file_and_row(tmp_path):
    path = _long_prompt_file(tmp_path, extra_rows=1)
    loaded = load_dataset(str(path), task="preference")
    with pytest.raises(DataError, match=r"long\.jsonl:1 \(example 0\).*over the hard cap 512") as info:
        tokenize_dataset(loaded.examples, task="preference", tokenizer=_CharTokenizer(), truncation=TRUNC)
    assert info.value.reason == "over_hard_cap"


def test_row_over_the_hard_cap_is_skipped_and_counted(tmp_path):
    path = _long_prompt_file(tmp_path, extra_rows=2)
    loaded = load_dataset(str(path), task="preference", on_error="skip")
    out = tokenize_dataset(
        loaded.examples, task="preference", tokenizer=_CharTokenizer(), truncation=TRUNC, on_error="skip"
    )
    assert len(out.examples) == 2 and [e.index for e in out.examples] == [1, 2]
    assert dict(out.report.counts) == {"over_hard_cap": 1}
    assert "long.jsonl:1" in out.report.samples["over_hard_cap"][0]
    # A prompt a little over max_prompt_length is still truncated by design (not an error).
    write_jsonl([{"prompt": "x" * 100, "chosen": "yes", "rejected": "no"}], str(tmp_path / "ok.jsonl"))
    out = tokenize_dataset(
        load_dataset(str(tmp_path / "ok.jsonl"), task="preference").examples,
        task="preference",
        tokenizer=_CharTokenizer(),
        truncation=TRUNC,
    )
    assert out.stats["prompt_truncated"] == 1 and len(out.examples[0].sequences[0].input_ids) <= 64


def test_nothing_left_after_skipping_is_an_error_naming_the_file(tmp_path):
    path = _long_prompt_file(tmp_path)
    loaded = load_dataset(str(path), task="preference", on_error="skip")
    with pytest.raises(DataError, match=r"long\.jsonl: no example left after tokenization of 1.*over_hard_cap=1"):
        tokenize_dataset(
            loaded.examples, task="preference", tokenizer=_CharTokenizer(), truncation=TRUNC, on_error="skip"
        )


def test_row_with_no_room_for_the_response_names_file_and_row(tmp_path):
    path = tmp_path / "noroom.jsonl"
    write_jsonl(
        [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "z" * 70, "chosen": "a", "rejected": "b"}],
        str(path),
    )
    loaded = load_dataset(str(path), task="preference")
    no_prompt_cap = TruncationConfig(max_length=64)  # the prompt alone fills max_length
    with pytest.raises(DataError, match=r"noroom\.jsonl:2 \(example 1\).*no response token left") as info:
        tokenize_dataset(loaded.examples, task="preference", tokenizer=_CharTokenizer(), truncation=no_prompt_cap)
    assert info.value.reason == "no_room_for_response"
    out = tokenize_dataset(
        loaded.examples, task="preference", tokenizer=_CharTokenizer(), truncation=no_prompt_cap, on_error="skip"
    )
    assert len(out.examples) == 1 and dict(out.report.counts) == {"no_room_for_response": 1}


# ----------------------------------------------------------------------------------------------
# 7. scikit-learn >= 1.4 (setup.py): no 1.8-only LogisticRegressionCV argument on older versions

from alignax.evaluate import alpaca_eval  # noqa: E402


class _LogisticRegressionCV17:
    """The constructor signature of scikit-learn 1.4-1.7 (no `use_legacy_attributes`)."""

    def __init__(
        self,
        *,
        Cs=10,
        fit_intercept=True,
        cv=None,
        dual=False,
        penalty="l2",
        scoring=None,
        solver="lbfgs",
        tol=1e-4,
        max_iter=100,
        class_weight=None,
        n_jobs=None,
        verbose=0,
        refit=True,
        intercept_scaling=1.0,
        multi_class="deprecated",
        random_state=None,
        l1_ratios=None,
    ):
        pass


def test_l1_logistic_regression_arguments_work_before_sklearn_1_8(monkeypatch):
    monkeypatch.setattr(alpaca_eval, "LogisticRegressionCV", _LogisticRegressionCV17)
    kwargs = alpaca_eval._l1_penalty_kwargs()
    assert kwargs == {"penalty": "l1"}  # l1_ratios alone would be ignored there (an L2 fit)
    _LogisticRegressionCV17(Cs=10, solver="liblinear", fit_intercept=False, **kwargs)
    monkeypatch.undo()
    from sklearn.linear_model import LogisticRegressionCV

    if "use_legacy_attributes" in inspect.signature(LogisticRegressionCV).parameters:  # >= 1.8: no deprecated penalty
        assert alpaca_eval._l1_penalty_kwargs() == {"l1_ratios": (1.0,), "use_legacy_attributes": False}
