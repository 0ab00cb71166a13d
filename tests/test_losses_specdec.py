"""The SpecDec++ acceptance-prediction head's loss (alignax/losses/specdec.py) against a torch
re-statement of the official SpecDec++ code."""

import functools

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import torch_f64
from jax.test_util import check_grads

from alignax.losses import specdec

torch = pytest.importorskip("torch")

ATOL = 1e-5


# ----------------------------------------------------------------------------------------------
# SpecDec++ acceptance head


def _specdec_reference(logits, soft_labels, mask, weight_mismatch):
    """torch re-statement of SpecDec_pp train.py MyTrainer.compute_loss (IGNORE_INDEX = -100)."""
    soft = torch_f64(np.where(mask > 0, soft_labels, -100.0)).reshape(-1)
    valid = (soft + 100).abs() > 0.1
    soft_0 = soft.clone()
    soft_0[valid] = 1 - soft[valid]
    label_0 = torch.full_like(soft, -100, dtype=torch.long)
    label_0[valid] = 0
    label_1 = torch.full_like(soft, -100, dtype=torch.long)
    label_1[valid] = 1
    loss_fct = torch.nn.CrossEntropyLoss(
        weight=torch.tensor([weight_mismatch, 1.0], dtype=torch.float64), reduction="none"
    )
    flat = torch_f64(logits).reshape(-1, 2)
    loss = (loss_fct(flat, label_0) * soft_0 + loss_fct(flat, label_1) * soft).sum()
    return (loss / (weight_mismatch * soft_0[valid].sum() + soft[valid].sum())).item()


class SpecDecTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_official_weighted_soft_label_cross_entropy(self):
        rng = np.random.default_rng(23)
        logits = rng.normal(size=(3, 5, 2)).astype(np.float32)
        accept = rng.uniform(size=(3, 5)).astype(np.float32)
        accept[0, 0] = 1.0
        accept[1, 1] = 0.0
        mask = (rng.uniform(size=(3, 5)) > 0.3).astype(np.float32)
        for weight in (1.0, 6.0):
            fn = self.variant(functools.partial(specdec.specdec_acceptance, mismatch_weight=weight))
            loss, metrics = fn(logits=logits, accept_probs=accept, mask=mask)
            np.testing.assert_allclose(loss, _specdec_reference(logits, accept, mask, weight), atol=1e-5)
            assert np.isfinite(float(metrics["kl"])) and float(metrics["kl"]) >= 0.0

    def test_kl_is_zero_at_the_target_and_padding_is_inert(self):
        accept = np.array([[0.2, 0.9, 1.0]], np.float32)
        clipped = np.clip(accept, 1e-6, 1 - 1e-6)
        logits = np.stack([np.zeros_like(clipped), np.log(clipped / (1 - clipped))], -1).astype(np.float32)
        mask = np.ones((1, 3), np.float32)
        _, metrics = specdec.specdec_acceptance(logits=logits, accept_probs=accept, mask=mask)
        np.testing.assert_allclose(metrics["kl"], 0.0, atol=1e-5)
        base, _ = specdec.specdec_acceptance(logits=logits, accept_probs=accept, mask=mask)
        padded, _ = specdec.specdec_acceptance(
            logits=np.pad(logits, ((0, 0), (0, 2), (0, 0)), constant_values=5.0),
            accept_probs=np.pad(accept, ((0, 0), (0, 2)), constant_values=0.3),
            mask=np.pad(mask, ((0, 0), (0, 2))),
        )
        np.testing.assert_allclose(padded, base, atol=1e-6)

    def test_gradient_matches_finite_differences(self):
        rng = np.random.default_rng(24)
        accept = rng.uniform(size=(2, 4)).astype(np.float32)
        fn = lambda z: specdec.specdec_acceptance(logits=z, accept_probs=accept, mask=np.ones((2, 4), np.float32))[0]
        check_grads(
            fn,
            (jnp.asarray(rng.normal(size=(2, 4, 2)).astype(np.float32)),),
            order=1,
            modes=["rev"],
            atol=1e-2,
            rtol=1e-2,
        )
