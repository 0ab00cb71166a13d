"""Tests for the non-DPO objectives: SFT/SoFT, SPPO/INPO/DNO, CUT, CGPO/FSPO, reward_bt (the PPO
set: tests/test_losses_ppo.py; the SpecDec++ head: tests/test_losses_specdec.py).

References are independent of the code under test: numpy/plain-Python formulas written from the
papers, TRL 0.19.1's own functions (DPOTrainer.dpo_loss, RewardTrainer.compute_loss,
trl.core.masked_whiten/masked_mean), torch re-statements of the official AlpacaFarm / CUT /
SpecDec++ code, and finite differences for gradients.
"""

import functools
import math
from types import SimpleNamespace

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import torch_f64
from jax.test_util import check_grads

import alignax.losses as losses
from alignax.losses import cgpo, cut, nash, reward, sft

torch = pytest.importorskip("torch")

ATOL = 1e-5


def _pair_arrays(batch=6, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return {
        name: (rng.normal(size=batch) * scale - 20.0).astype(np.float32)
        for name in ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    }


@pytest.fixture(scope="module")
def trl_dpo():
    """TRL 0.19.1 DPOTrainer.dpo_loss, called on log-probs with a namespace as `self`."""
    from trl.trainer.dpo_trainer import DPOTrainer

    def call(loss_type, beta, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps):
        namespace = SimpleNamespace(
            accelerator=SimpleNamespace(device="cpu"),
            f_divergence_type="reverse_kl",
            f_divergence_params={},
            reference_free=False,
            loss_type=loss_type,
            beta=beta,
            label_smoothing=0.0,
            use_weighting=False,
        )
        out = DPOTrainer.dpo_loss(
            namespace,
            torch_f64(chosen_logps),
            torch_f64(rejected_logps),
            torch_f64(ref_chosen_logps),
            torch_f64(ref_rejected_logps),
        )
        return [o.numpy() for o in out]

    return call


# ----------------------------------------------------------------------------------------------
# Registry, dtypes


def test_every_objective_is_registered():
    for name in (
        "sft",
        "soft",
        "sppo",
        "sppo_single",
        "sppo_sample",
        "inpo",
        "dno",
        "cut",
        "crpg",
        "codpo",
        "crraft",
        "fspo",
        "reward_bt",
        "ppo",
        "ppo_policy",
        "ppo_value",
        "specdec_acceptance",
    ):
        assert callable(losses.get(name)), name


def test_bf16_inputs_give_fp32_losses():
    pair = {k: jnp.asarray(v, jnp.bfloat16) for k, v in _pair_arrays().items()}
    probs = jnp.full((6,), 0.7, jnp.bfloat16)
    results = [
        nash.sppo(**pair, chosen_win_probs=probs, rejected_win_probs=1 - probs),
        nash.inpo(**pair, prev_chosen_logps=pair["ref_chosen_logps"], prev_rejected_logps=pair["ref_rejected_logps"]),
        nash.dno(**pair),
        cgpo.fspo(**pair),
        reward.reward_bt(chosen_rewards=pair["chosen_logps"], rejected_rewards=pair["rejected_logps"]),
        sft.sft(token_logps=jnp.full((2, 3), -1.0, jnp.bfloat16), loss_mask=jnp.ones((2, 3), bool)),
    ]
    for loss, metrics in results:
        assert loss.dtype == jnp.float32 and loss.shape == ()
        for value in metrics.values():
            assert value.shape == ()


# ----------------------------------------------------------------------------------------------
# SFT and SoFT


class SFTTest(chex.TestCase):
    def setUp(self):
        rng = np.random.default_rng(1)
        self.logps = -rng.exponential(size=(3, 5)).astype(np.float32)
        self.mask = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.float32)

    @chex.variants(with_jit=True, without_jit=True)
    def test_token_and_sequence_mean_closed_form(self):
        nll = -self.logps * self.mask
        token_mean = nll.sum() / self.mask.sum()
        sequence_mean = np.mean(nll.sum(1) / self.mask.sum(1))
        fn = self.variant(functools.partial(sft.sft, reduction="token_mean"))
        loss, metrics = fn(token_logps=self.logps, loss_mask=self.mask)
        np.testing.assert_allclose(loss, token_mean, atol=ATOL)
        np.testing.assert_allclose(metrics["ppl"], np.exp(token_mean), rtol=1e-5)
        fn = self.variant(functools.partial(sft.sft, reduction="sequence_mean"))
        np.testing.assert_allclose(fn(token_logps=self.logps, loss_mask=self.mask)[0], sequence_mean, atol=ATOL)

    def test_padding_does_not_change_the_loss(self):
        for reduction in ("token_mean", "sequence_mean"):
            base, _ = sft.sft(token_logps=self.logps, loss_mask=self.mask, reduction=reduction)
            padded_logps = np.pad(self.logps, ((0, 2), (0, 3)), constant_values=-np.inf)  # log 0 in padding
            padded_mask = np.pad(self.mask, ((0, 2), (0, 3)))
            padded, _ = sft.sft(token_logps=padded_logps, loss_mask=padded_mask, reduction=reduction)
            np.testing.assert_allclose(padded, base, atol=ATOL)

    def test_gradient_accumulation_with_global_token_count(self):
        full, _ = sft.sft(token_logps=self.logps, loss_mask=self.mask)
        total = self.mask.sum()
        parts = [
            sft.sft(token_logps=self.logps[s], loss_mask=self.mask[s], num_tokens=total)[0]
            for s in (slice(0, 1), slice(1, 3))
        ]
        np.testing.assert_allclose(sum(parts), full, atol=ATOL)
        # Without the global count the micro-batch means do not add up to the full-batch mean.
        naive = sum(sft.sft(token_logps=self.logps[s], loss_mask=self.mask[s])[0] for s in (slice(0, 1), slice(1, 3)))
        assert abs(float(naive) - float(full)) > 1e-3

    def test_gradient_matches_finite_differences(self):
        fn = lambda x: sft.sft(token_logps=x, loss_mask=self.mask, reduction="sequence_mean")[0]
        check_grads(fn, (jnp.asarray(self.logps),), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)

    def test_bad_arguments_are_named(self):
        with pytest.raises(ValueError, match="reduction"):
            sft.sft(token_logps=self.logps, loss_mask=self.mask, reduction="sum")
        with pytest.raises(ValueError, match="num_tokens"):
            sft.sft(token_logps=self.logps, loss_mask=self.mask, reduction="sequence_mean", num_tokens=3)

    @chex.variants(with_jit=True, without_jit=True)
    def test_soft_sums_or_averages_the_exit_nlls(self):
        exits = np.stack([self.logps * s for s in (3.0, 2.0, 1.0)])
        per_exit = [float((-e * self.mask).sum() / self.mask.sum()) for e in exits]
        fn = self.variant(functools.partial(sft.soft, exit_layers=(12, 16, 20)))
        loss, metrics = fn(exit_token_logps=exits, loss_mask=self.mask)
        np.testing.assert_allclose(loss, sum(per_exit), atol=1e-4)
        np.testing.assert_allclose(metrics["nll/exit_16"], per_exit[1], atol=ATOL)
        np.testing.assert_allclose(metrics["nll"], per_exit[-1], atol=ATOL)
        fn = self.variant(functools.partial(sft.soft, exit_reduction="mean"))
        np.testing.assert_allclose(fn(exit_token_logps=exits, loss_mask=self.mask)[0], np.mean(per_exit), atol=1e-4)

    def test_soft_rejects_mismatched_exit_names(self):
        with pytest.raises(ValueError, match="exit_layers"):
            sft.soft(exit_token_logps=np.zeros((2, 3, 5), np.float32), loss_mask=self.mask, exit_layers=(1, 2, 3))


# ----------------------------------------------------------------------------------------------
# SPPO, INPO, DNO


class NashTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_sppo_closed_form(self):
        # beta = 0.5 -> eta = 2. Chosen: rho = 1, P = 1 -> target 1, error 0. Rejected: rho = 0, P = 0
        # -> target -1, error 1. Loss = 0.5 * (0 + 1).
        fn = self.variant(functools.partial(nash.sppo, beta=0.5))
        loss, metrics = fn(
            chosen_logps=jnp.array([-4.0]),
            rejected_logps=jnp.array([-6.0]),
            ref_chosen_logps=jnp.array([-5.0]),
            ref_rejected_logps=jnp.array([-6.0]),
            chosen_win_probs=jnp.array([1.0]),
            rejected_win_probs=jnp.array([0.0]),
        )
        np.testing.assert_allclose(loss, 0.5, atol=ATOL)
        np.testing.assert_allclose(metrics["rewards/chosen"], 0.5, atol=ATOL)

    def test_sppo_per_sample_form_equals_pair_form(self):
        pair = _pair_arrays(seed=3)
        rng = np.random.default_rng(3)
        qw, ql = rng.uniform(size=6).astype(np.float32), rng.uniform(size=6).astype(np.float32)
        pair_loss, _ = nash.sppo(**pair, chosen_win_probs=qw, rejected_win_probs=ql, beta=0.1)
        sample_loss, _ = nash.sppo_sample(
            logps=np.concatenate([pair["chosen_logps"], pair["rejected_logps"]]),
            ref_logps=np.concatenate([pair["ref_chosen_logps"], pair["ref_rejected_logps"]]),
            win_probs=np.concatenate([qw, ql]),
            beta=0.1,
        )
        np.testing.assert_allclose(pair_loss, sample_loss, rtol=1e-5)

    def test_sppo_single_is_symmetric_under_swap(self):
        pair = _pair_arrays(seed=4)
        q = np.random.default_rng(4).uniform(size=6).astype(np.float32)
        forward, _ = nash.sppo_single(**pair, chosen_pref_probs=q, beta=0.1)
        swapped, _ = nash.sppo_single(
            chosen_logps=pair["rejected_logps"],
            rejected_logps=pair["chosen_logps"],
            ref_chosen_logps=pair["ref_rejected_logps"],
            ref_rejected_logps=pair["ref_chosen_logps"],
            chosen_pref_probs=1 - q,
            beta=0.1,
        )
        np.testing.assert_allclose(forward, swapped, rtol=1e-5)

    def test_sppo_gradient_matches_finite_differences(self):
        pair = _pair_arrays(seed=5, scale=0.5)
        fn = lambda w: nash.sppo(
            **{**pair, "chosen_logps": w},
            chosen_win_probs=np.full(6, 0.8, np.float32),
            rejected_win_probs=np.full(6, 0.3, np.float32),
            beta=1.0,
        )[0]
        check_grads(fn, (jnp.asarray(pair["chosen_logps"]),), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)

    def test_inpo_tau_and_ref_weight_are_the_same_knob(self):
        pair = _pair_arrays(seed=6)
        prev = {
            "prev_chosen_logps": pair["ref_chosen_logps"] + 1.0,
            "prev_rejected_logps": pair["ref_rejected_logps"] - 0.5,
        }
        a, _ = nash.inpo(**pair, **prev, eta=0.01, tau=0.005)
        b, _ = nash.inpo(**pair, **prev, eta=0.01, ref_weight=0.5)
        np.testing.assert_allclose(a, b, rtol=1e-6)
        with pytest.raises(ValueError, match="tau"):
            nash.inpo(**pair, **prev, tau=0.1, ref_weight=0.5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_inpo_closed_form(self):
        # c = 1/3, eta = 0.25 -> target 2. pi margin 3, ref margin 3, prev margin 0:
        # h = 3 - 1 - 0 = 2 -> loss 0. With prev margin 3: h = 3 - 1 - 2 = 0 -> loss 4.
        fn = self.variant(functools.partial(nash.inpo, eta=0.25))
        args = dict(
            chosen_logps=jnp.array([-1.0]),
            rejected_logps=jnp.array([-4.0]),
            ref_chosen_logps=jnp.array([-2.0]),
            ref_rejected_logps=jnp.array([-5.0]),
        )
        np.testing.assert_allclose(
            fn(**args, prev_chosen_logps=jnp.array([-3.0]), prev_rejected_logps=jnp.array([-3.0]))[0], 0.0, atol=1e-5
        )
        np.testing.assert_allclose(
            fn(**args, prev_chosen_logps=jnp.array([-2.0]), prev_rejected_logps=jnp.array([-5.0]))[0], 4.0, atol=1e-5
        )


def test_sppo_hard_labels_equal_trl_sppo_hard(trl_dpo):
    pair = _pair_arrays(seed=7, scale=0.5)
    beta = 0.5
    ones, zeros = np.ones(6, np.float32), np.zeros(6, np.float32)
    ours, metrics = nash.sppo(**pair, chosen_win_probs=ones, rejected_win_probs=zeros, beta=beta)
    trl_losses, trl_chosen, trl_rejected = trl_dpo("sppo_hard", beta, **pair)
    # TRL's sppo_hard drops the factor 1/2 of the official SPPO loss.
    np.testing.assert_allclose(2 * ours, trl_losses.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["rewards/chosen"], trl_chosen.mean(), atol=ATOL)
    np.testing.assert_allclose(metrics["rewards/rejected"], trl_rejected.mean(), atol=ATOL)


@pytest.mark.parametrize("ref_weight", [0.0, 1.0])
def test_inpo_endpoints_equal_trl_ipo(trl_dpo, ref_weight):
    """c = 0 is IPO against the previous iterate; c = 1 is IPO against the reference (beta = eta)."""
    pair = _pair_arrays(seed=8, scale=0.3)
    prev = {
        "prev_chosen_logps": pair["ref_chosen_logps"] + 0.7,
        "prev_rejected_logps": pair["ref_rejected_logps"] - 0.2,
    }
    eta = 0.5
    ours, _ = nash.inpo(**pair, **prev, eta=eta, ref_weight=ref_weight)
    reference = (
        (pair["ref_chosen_logps"], pair["ref_rejected_logps"])
        if ref_weight
        else (prev["prev_chosen_logps"], prev["prev_rejected_logps"])
    )
    trl_losses, _, _ = trl_dpo("ipo", eta, pair["chosen_logps"], pair["rejected_logps"], *reference)
    np.testing.assert_allclose(ours, trl_losses.mean(), rtol=1e-5)


def test_dno_equals_trl_sigmoid_with_previous_iterate_as_reference(trl_dpo):
    pair = _pair_arrays(seed=9)
    ours, metrics = nash.dno(**pair, beta=0.1)
    trl_losses, trl_chosen, trl_rejected = trl_dpo("sigmoid", 0.1, **pair)
    np.testing.assert_allclose(ours, trl_losses.mean(), atol=ATOL)
    np.testing.assert_allclose(metrics["rewards/margins"], (trl_chosen - trl_rejected).mean(), atol=ATOL)
    np.testing.assert_allclose(metrics["rewards/accuracies"], (trl_chosen > trl_rejected).mean(), atol=ATOL)


def test_dno_zero_margin_is_log2_and_mask_drops_pairs():
    zeros = np.zeros(4, np.float32)
    loss, _ = nash.dno(chosen_logps=zeros, rejected_logps=zeros, ref_chosen_logps=zeros, ref_rejected_logps=zeros)
    np.testing.assert_allclose(loss, math.log(2.0), atol=ATOL)
    pair = _pair_arrays(seed=10, batch=4)
    keep = nash.dno_margin_filter(
        chosen_scores=np.array([9.0, 5.0, 8.0, 6.0]), rejected_scores=np.array([1.0, 4.0, 7.5, 1.0]), min_margin=2.0
    )
    np.testing.assert_array_equal(keep, [True, False, False, True])
    masked, metrics = nash.dno(**pair, pair_mask=keep)
    kept, _ = nash.dno(**{k: v[np.asarray(keep)] for k, v in pair.items()})
    np.testing.assert_allclose(masked, kept, atol=ATOL)
    assert float(metrics["pairs_kept"]) == 2.0


def test_dno_gradient_matches_finite_differences():
    pair = _pair_arrays(seed=11, scale=1.0)
    fn = lambda w: nash.dno(**{**pair, "rejected_logps": w}, beta=0.5)[0]
    check_grads(fn, (jnp.asarray(pair["rejected_logps"]),), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


# ----------------------------------------------------------------------------------------------
# CUT


def _cut_reference(aligned_logps, mask, unjudged_logps, is_negative, threshold, weight):
    """Torch re-statement of wwxu21/CUT LlamaForCausalLM.forward/unlikelihood on label probs."""
    p_aligned = torch.exp(torch_f64(aligned_logps))
    p_unjudged = torch.exp(torch_f64(unjudged_logps))
    m = torch_f64(mask).bool()
    mle = -torch.log(p_aligned[m]).mean()
    negative = torch.tensor(is_negative)
    if not negative.any():
        return mle.item()
    neg_mask = m & negative[:, None]
    valid_prob = p_aligned[neg_mask]
    valid_prob_neg = p_unjudged[neg_mask].clone()
    unlike = (valid_prob / valid_prob_neg) > threshold
    valid_prob_neg[unlike] = 1 - valid_prob_neg[unlike]
    valid_prob_neg[valid_prob_neg == 0] += 1e-5
    lprob = torch.log(valid_prob_neg)
    lprob[unlike] = weight * lprob[unlike]
    unlikelihood = -lprob.sum() / lprob.numel()
    return ((mle + unlikelihood) / 2).item()


class CUTTest(chex.TestCase):
    def setUp(self):
        rng = np.random.default_rng(12)
        self.unjudged = -rng.exponential(size=(4, 6)).astype(np.float32)
        # Judgment raises some tokens' probability by more than lambda, others by less.
        self.aligned = (self.unjudged + rng.normal(scale=0.3, size=(4, 6))).astype(np.float32)
        self.aligned = np.minimum(self.aligned, -1e-3).astype(np.float32)
        self.mask = np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0], [1] * 3 + [0] * 3], np.float32)
        self.negative = np.array([True, False, True, False])

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_official_code(self):
        for threshold, weight in ((1.1, 1.0), (1.2, 0.5)):
            fn = self.variant(functools.partial(cut.cut, threshold=threshold, unlikelihood_weight=weight))
            loss, metrics = fn(
                aligned_logps=self.aligned,
                aligned_mask=self.mask,
                unjudged_logps=self.unjudged,
                is_negative=self.negative,
            )
            expected = _cut_reference(self.aligned, self.mask, self.unjudged, self.negative, threshold, weight)
            np.testing.assert_allclose(loss, expected, atol=1e-5)
            assert 0 < float(metrics["cut/num_flagged"]) < self.mask[self.negative].sum()

    def test_no_negative_is_plain_mle(self):
        none = np.zeros(4, bool)
        loss, _ = cut.cut(
            aligned_logps=self.aligned, aligned_mask=self.mask, unjudged_logps=self.unjudged, is_negative=none
        )
        np.testing.assert_allclose(loss, sft.sft(token_logps=self.aligned, loss_mask=self.mask)[0], atol=ATOL)
        np.testing.assert_allclose(
            loss, _cut_reference(self.aligned, self.mask, self.unjudged, none, 1.1, 1.0), atol=ATOL
        )

    def test_flags_are_detached_and_thresholded(self):
        flags = cut.cut_flags(
            judged_logps=np.log([[0.5, 0.5, 0.5]]),
            unjudged_logps=np.log([[0.4, 0.5, 0.44]]),
            mask=np.array([[1, 1, 0]]),
            threshold=1.2,
        )
        np.testing.assert_array_equal(flags, [[True, False, False]])  # 1.25 > 1.2; 1.0; masked 1.136
        # Gradient w.r.t. the aligned log-probs comes from the MLE term only (the flags are detached).
        grad = jax.grad(
            lambda a: cut.cut(
                aligned_logps=a, aligned_mask=self.mask, unjudged_logps=self.unjudged, is_negative=self.negative
            )[0]
        )(jnp.asarray(self.aligned))
        np.testing.assert_allclose(grad, -0.5 * self.mask / self.mask.sum(), atol=1e-6)

    def test_probability_one_uses_the_official_floor(self):
        # A flagged token matches the official code; then p_0 = 1 exactly -> log(1 - p_0) is floored at log(1e-5).
        loss, _ = cut.cut(
            aligned_logps=np.array([[0.0]]),
            aligned_mask=np.ones((1, 1)),
            unjudged_logps=np.array([[-1.0]]),
            is_negative=np.array([True]),
        )
        expected = _cut_reference(np.array([[0.0]]), np.ones((1, 1)), np.array([[-1.0]]), np.array([True]), 1.1, 1.0)
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
        loss, _ = cut.cut(
            aligned_logps=np.array([[0.0]]),
            aligned_mask=np.ones((1, 1)),
            unjudged_logps=np.array([[0.0]]),
            is_negative=np.array([True]),
            threshold=0.5,
        )
        np.testing.assert_allclose(loss, 0.5 * (0.0 - math.log(1e-5)), rtol=1e-4)

    def test_padding_does_not_change_the_loss(self):
        base, _ = cut.cut(
            aligned_logps=self.aligned, aligned_mask=self.mask, unjudged_logps=self.unjudged, is_negative=self.negative
        )
        pad = lambda x, v: np.pad(x, ((0, 0), (0, 3)), constant_values=v)
        fn = lambda a, u: cut.cut(
            aligned_logps=a, aligned_mask=pad(self.mask, 0), unjudged_logps=u, is_negative=self.negative
        )[0]
        padded_args = (jnp.asarray(pad(self.aligned, -np.inf)), jnp.asarray(pad(self.unjudged, -np.inf)))
        np.testing.assert_allclose(fn(*padded_args), base, atol=ATOL)
        for grad in jax.grad(fn, argnums=(0, 1))(*padded_args):  # no NaN leaks from log 0 in the padding
            assert np.all(np.isfinite(grad))

    def test_gradient_matches_finite_differences(self):
        fn = lambda u: cut.cut(
            aligned_logps=self.aligned, aligned_mask=self.mask, unjudged_logps=u, is_negative=self.negative
        )[0]
        check_grads(fn, (jnp.asarray(self.unjudged),), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


# ----------------------------------------------------------------------------------------------
# CGPO and FSPO


def test_crpg_gradient_is_calibrated_gated_kl_regularized_policy_gradient_with_baseline():
    # Updated for the CGPO fix (issue "Engine v2"): the old test encoded R·1[feasible] with no KL
    # factor and no baseline. Reference: TRL's CGPO trainer (crpg_optimization), restated in numpy.
    rng = np.random.default_rng(13)
    logps = rng.normal(size=5).astype(np.float32) - 10
    rewards, baseline = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    feasible = np.array([True, False, True, True, False])
    ref = logps - np.array([0.3, 0.0, 2.5, -1.0, 0.1], np.float32)  # KL 0.3, 0, 2.5 (past KL_max), -1, 0.1
    calibrated = 1 / (1 + np.exp(-(rewards - baseline)))
    regularized = calibrated * feasible * np.maximum(1 - (logps - ref) / 2.0, 0)
    advantage = regularized - regularized.mean()
    kwargs = dict(rewards=rewards, baseline_rewards=baseline, feasible=feasible, ref_logps=ref, kl_threshold=2.0)
    loss, metrics = cgpo.crpg(logps=logps, **kwargs)
    np.testing.assert_allclose(loss, -np.mean(advantage * logps), rtol=1e-5)
    grad = jax.grad(lambda x: cgpo.crpg(logps=x, **kwargs)[0])(jnp.asarray(logps))
    np.testing.assert_allclose(grad, -advantage / 5, atol=1e-6)
    assert grad[2] == pytest.approx(regularized.mean() / 5)  # KL past the threshold: factor 0
    np.testing.assert_allclose(metrics["feasible_fraction"], 0.6, atol=ATOL)


def test_codpo_is_dpo_plus_length_normalized_nll(trl_dpo):
    pair = _pair_arrays(seed=14)
    lengths = np.array([10, 20, 5, 7, 9, 30], np.float32)
    ours, metrics = cgpo.codpo(**pair, chosen_lengths=lengths, beta=0.1, nll_weight=0.3)
    trl_losses, _, _ = trl_dpo("sigmoid", 0.1, **pair)
    np.testing.assert_allclose(ours, np.mean(trl_losses - 0.3 * pair["chosen_logps"] / lengths), rtol=1e-5)
    np.testing.assert_allclose(metrics["codpo/dpo"], trl_losses.mean(), atol=ATOL)
    keep = np.array([1, 0, 1, 1, 0, 1], bool)
    masked, _ = cgpo.codpo(**pair, chosen_lengths=lengths, nll_weight=0.3, pair_mask=keep)
    kept, _ = cgpo.codpo(**{k: v[keep] for k, v in pair.items()}, chosen_lengths=lengths[keep], nll_weight=0.3)
    np.testing.assert_allclose(masked, kept, rtol=1e-5)


def test_crraft_drops_infeasible_and_weights_by_calibrated_reward():
    # Updated for the CGPO fix: the reference (TRL's CGPO trainer, Eq. 18) weights the summed
    # log-prob; the old test encoded a length-normalized default.
    logps = np.array([-10.0, -20.0, -5.0], np.float32)
    lengths = np.array([5.0, 10.0, 1.0], np.float32)
    rewards, baseline = np.array([1.0, 2.0, 0.0], np.float32), np.array([0.0, 0.0, 0.0], np.float32)
    feasible = np.array([True, True, False])
    loss, _ = cgpo.crraft(logps=logps, lengths=lengths, rewards=rewards, baseline_rewards=baseline, feasible=feasible)
    sig = lambda z: 1 / (1 + math.exp(-z))
    np.testing.assert_allclose(loss, (sig(1.0) * 10.0 + sig(2.0) * 20.0) / 2, rtol=1e-5)
    normalized, _ = cgpo.crraft(
        logps=logps,
        lengths=lengths,
        rewards=rewards,
        baseline_rewards=baseline,
        feasible=feasible,
        length_normalize=True,
    )
    np.testing.assert_allclose(normalized, (sig(1.0) * 2.0 + sig(2.0) * 2.0) / 2, rtol=1e-5)
    changed, _ = cgpo.crraft(
        logps=np.array([-10.0, -20.0, -500.0], np.float32),
        lengths=lengths,
        rewards=rewards,
        baseline_rewards=baseline,
        feasible=feasible,
    )
    np.testing.assert_allclose(changed, loss, rtol=1e-6)
    # KL gate: the second row is past KL_max = 1 and is dropped too.
    gated, _ = cgpo.crraft(
        logps=logps,
        rewards=rewards,
        baseline_rewards=baseline,
        feasible=feasible,
        ref_logps=logps - np.array([0.5, 3.0, 0.0], np.float32),
        kl_threshold=1.0,
    )
    np.testing.assert_allclose(gated, sig(1.0) * 10.0, rtol=1e-5)


@pytest.mark.parametrize("base_loss,length_normalize", [("ipo", False), ("ipo", True), ("sigmoid", False)])
def test_fspo_equals_trl_base_loss(trl_dpo, base_loss, length_normalize):
    pair = _pair_arrays(seed=15, scale=0.5)
    lengths = {
        "chosen_lengths": np.array([3, 4, 5, 6, 7, 8], np.float32),
        "rejected_lengths": np.array([8, 7, 6, 5, 4, 3], np.float32),
    }
    ours, _ = cgpo.fspo(**pair, **lengths, beta=0.1, base_loss=base_loss, length_normalize=length_normalize)
    trl_inputs = dict(pair)
    if length_normalize:  # TRL 0.19 divides the log-probs by the completion length before dpo_loss for IPO
        for side in ("chosen", "rejected"):
            for key in (f"{side}_logps", f"ref_{side}_logps"):
                trl_inputs[key] = pair[key] / lengths[f"{side}_lengths"]
    trl_losses, _, _ = trl_dpo(base_loss, 0.1, **trl_inputs)
    np.testing.assert_allclose(ours, trl_losses.mean(), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Reward model


@pytest.mark.parametrize("with_margin", [False, True])
def test_reward_bt_equals_trl_reward_trainer(with_margin):
    from trl.trainer.reward_trainer import RewardTrainer

    rng = np.random.default_rng(16)
    chosen, rejected = rng.normal(size=(8, 1)), rng.normal(size=(8, 1))
    margin = rng.uniform(size=(8, 1))
    inputs = {
        "input_ids_chosen": torch_f64(chosen),
        "attention_mask_chosen": None,
        "input_ids_rejected": torch_f64(rejected),
        "attention_mask_rejected": None,
    }
    if with_margin:
        inputs["margin"] = torch_f64(margin)
    fake_model = lambda input_ids, attention_mask, return_dict: {"logits": input_ids}  # rewards pass straight through
    namespace = SimpleNamespace(args=SimpleNamespace(center_rewards_coefficient=None))
    trl_loss = RewardTrainer.compute_loss(namespace, fake_model, inputs).item()
    ours, metrics = reward.reward_bt(
        chosen_rewards=chosen[:, 0], rejected_rewards=rejected[:, 0], margin=margin[:, 0] if with_margin else None
    )
    np.testing.assert_allclose(ours, trl_loss, atol=ATOL)
    np.testing.assert_allclose(metrics["accuracy"], np.mean(chosen > rejected), atol=ATOL)


def test_reward_bt_equals_alpaca_farm_bce_and_log2_at_ties():
    rng = np.random.default_rng(17)
    r0, r1 = rng.normal(size=8), rng.normal(size=8)
    choice = rng.integers(0, 2, size=8)
    # AlpacaFarm: logit = r_1 - r_0, BCE with logits against choice (1 = index 1 preferred).
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch_f64(r1 - r0), torch_f64(choice)).item()
    chosen = np.where(choice == 1, r1, r0)
    rejected = np.where(choice == 1, r0, r1)
    np.testing.assert_allclose(
        reward.reward_bt(chosen_rewards=chosen, rejected_rewards=rejected)[0], expected, atol=ATOL
    )
    np.testing.assert_allclose(
        reward.reward_bt(chosen_rewards=np.ones(3), rejected_rewards=np.ones(3))[0], math.log(2), atol=ATOL
    )
