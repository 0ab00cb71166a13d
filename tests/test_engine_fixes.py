"""Fixes from the issue "Engine v2" (items 4-6): CGPO formulas, finite gradients for masked rows,
out-of-range labels, L-Eval exact match, checkpoint restore, bad input files, scikit-learn versions.

Expected values are hand-computed or restated independently of the code under test (numpy
formulas from the cited sources); every test here fails on the code before the fix.
"""
from __future__ import annotations

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
    loss, _ = cgpo.crpg(logps=logps, ref_logps=ref, rewards=rewards, baseline_rewards=baseline,
                        feasible=feasible, kl_threshold=4.0)
    # R = (0.375, 0.5), mean 0.4375, advantages (-0.0625, 0.0625)
    expected = -((-0.0625) * -4.0 + 0.0625 * -6.0) / 2
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_crpg_requires_a_kl_threshold():
    params = inspect.signature(cgpo.crpg).parameters
    assert params["kl_threshold"].default is inspect.Parameter.empty
    with pytest.raises(ValueError, match="kl_threshold"):
        cgpo.crpg(logps=np.zeros(2, np.float32), ref_logps=np.zeros(2, np.float32), rewards=np.zeros(2, np.float32),
                  baseline_rewards=np.zeros(2, np.float32), feasible=np.ones(2, bool), kl_threshold=0.0)


def test_codpo_default_nll_weight_is_five():
    loss, _ = cgpo.codpo(chosen_logps=np.array([-8.0], np.float32), rejected_logps=np.array([-8.0], np.float32),
                         ref_chosen_logps=np.array([-8.0], np.float32), ref_rejected_logps=np.array([-8.0], np.float32),
                         chosen_lengths=np.array([4.0], np.float32))
    # h = 0: DPO term log 2; NLL term (5/4)·8 = 10
    assert float(loss) == pytest.approx(math.log(2.0) + 10.0, rel=1e-6)


def test_crraft_sums_log_probs_by_default():
    loss, _ = cgpo.crraft(logps=np.array([-12.0], np.float32), lengths=np.array([4.0], np.float32),
                          rewards=np.array([0.0], np.float32), baseline_rewards=np.array([0.0], np.float32),
                          feasible=np.array([True]))
    assert float(loss) == pytest.approx(0.5 * 12.0, rel=1e-6)


# ----------------------------------------------------------------------------------------------
# 4. L-Eval exact match: the whole prediction (upstream em.py at HEAD, EVALUATION.md §5)


def test_leval_exact_match_reads_every_line():
    # The answer is on the second line; the first line is a preamble longer than one character.
    assert leval.exact_match_score("Let me think about it.\nThe capital is Paris", "Paris") == 1.0
    assert leval.exact_match_score("Sure!\nanswer: 42 apples", "42 apples") == 1.0
    assert leval.exact_match_score("Let me think.\nRome", "Paris") == 0.0
