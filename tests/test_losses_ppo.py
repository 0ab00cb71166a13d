"""The AlpacaFarm PPO objective set (alignax/losses/ppo.py) against torch re-statements of the
official AlpacaFarm code and TRL 0.19.1's `trl.core.masked_whiten` / `masked_mean`, and finite
differences for gradients."""

import functools

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import torch_f64
from jax.test_util import check_grads

from alignax.losses import ppo

torch = pytest.importorskip("torch")

ATOL = 1e-5


# ----------------------------------------------------------------------------------------------
# PPO set


def _ragged_mask(lengths, width):
    return (np.arange(width)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)


class PPOTest(chex.TestCase):
    def setUp(self):
        rng = np.random.default_rng(18)
        self.lengths = [6, 3, 5, 1]
        self.mask = _ragged_mask(self.lengths, 6)
        self.rewards = rng.normal(size=(4, 6)).astype(np.float32)
        self.values = rng.normal(size=(4, 6)).astype(np.float32)

    @chex.variants(with_jit=True, without_jit=True)
    def test_gae_matches_python_loop_on_unpadded_rows(self):
        for gamma, lam in ((1.0, 1.0), (0.99, 0.95)):
            fn = self.variant(functools.partial(ppo.gae, gamma=gamma, lam=lam))
            advantages, returns = fn(rewards=self.rewards, values=self.values, mask=self.mask)
            for b, length in enumerate(self.lengths):
                # The AlpacaFarm/TRL loop, run on the row without its padding.
                r, v = self.rewards[b, :length], self.values[b, :length]
                last, expected = 0.0, []
                for t in reversed(range(length)):
                    next_value = v[t + 1] if t < length - 1 else 0.0
                    delta = r[t] + gamma * next_value - v[t]
                    last = delta + gamma * lam * last
                    expected.append(last)
                expected = np.array(expected[::-1])
                np.testing.assert_allclose(advantages[b, :length], expected, atol=1e-5)
                np.testing.assert_allclose(returns[b, :length], expected + v, atol=1e-5)
                np.testing.assert_array_equal(advantages[b, length:], 0.0)

    def test_whiten_trl_convention_equals_trl_masked_whiten(self):
        from trl.core import masked_whiten

        for shift_mean in (True, False):
            ours = ppo.whiten(self.rewards, self.mask, shift_mean=shift_mean, convention="trl")
            theirs = masked_whiten(torch_f64(self.rewards), torch_f64(self.mask).bool(), shift_mean=shift_mean).numpy()
            np.testing.assert_allclose(np.asarray(ours)[self.mask > 0], theirs[self.mask > 0], atol=1e-5)

    def test_whiten_alpaca_farm_convention_equals_torch_ops_whiten(self):
        x = torch_f64(self.rewards)
        for shift_mean in (True, False):
            mean, std = x.mean(), x.std(unbiased=False)
            expected = (x - mean) / (std + 1e-8)
            if not shift_mean:
                expected = expected + mean
            ours = ppo.whiten(self.rewards, shift_mean=shift_mean)
            np.testing.assert_allclose(ours, expected.numpy(), atol=1e-5)

    def test_shape_rewards_matches_alpaca_farm(self):
        rng = np.random.default_rng(19)
        logps, ref_logps = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(4, 6)).astype(np.float32)
        scores = rng.normal(size=4).astype(np.float32)
        out = ppo.shape_rewards(scores=scores, logps=logps, ref_logps=ref_logps, mask=self.mask, kl_coef=0.2)
        kl = np.clip(logps - ref_logps, 0.0, None) * self.mask
        expected = -0.2 * kl
        for b, length in enumerate(self.lengths):
            expected[b, length - 1] += scores[b]  # terminal position = (#non-pad) - 1
        np.testing.assert_allclose(out["shaped_rewards"], expected, atol=1e-6)
        np.testing.assert_allclose(out["kl"], kl, atol=1e-6)
        unclamped = ppo.shape_rewards(scores=scores, logps=logps, ref_logps=ref_logps, mask=self.mask, clamp_kl=False)
        assert float(np.min(unclamped["kl"])) < 0.0

    def _alpaca_farm_losses(self, logps, old_logps, advantages, values, old_values, returns):
        """torch re-statement of alpaca_farm PPOTrainer.compute_loss (unmasked means)."""
        vpred, values, returns, advantages = (
            torch_f64(values),
            torch_f64(old_values),
            torch_f64(returns),
            torch_f64(advantages),
        )
        vpredclipped = torch.clamp(vpred, min=values - 0.2, max=values + 0.2)
        vf_loss = 0.5 * torch.maximum((vpred - returns) ** 2, (vpredclipped - returns) ** 2).mean()
        ratio = torch.exp(torch_f64(logps) - torch_f64(old_logps))
        pg_loss = torch.maximum(-advantages * ratio, -advantages * torch.clamp(ratio, 0.8, 1.2)).mean()
        return pg_loss.item(), vf_loss.item()

    def _rollout(self, seed):
        rng = np.random.default_rng(seed)
        old_logps = -rng.exponential(size=(4, 6)).astype(np.float32)
        logps = (old_logps + rng.normal(scale=0.3, size=(4, 6))).astype(np.float32)
        old_values = rng.normal(size=(4, 6)).astype(np.float32)
        values = (old_values + rng.normal(scale=0.3, size=(4, 6))).astype(np.float32)
        return dict(
            logps=logps,
            old_logps=old_logps,
            advantages=rng.normal(size=(4, 6)).astype(np.float32),
            values=values,
            old_values=old_values,
            returns=rng.normal(size=(4, 6)).astype(np.float32),
        )

    @chex.variants(with_jit=True, without_jit=True)
    def test_ppo_loss_matches_alpaca_farm(self):
        rollout = self._rollout(20)
        loss, metrics = self.variant(ppo.ppo)(**rollout, mask=np.ones((4, 6), np.float32))
        pg, vf = self._alpaca_farm_losses(**rollout)
        np.testing.assert_allclose(metrics["loss/policy"], pg, atol=1e-5)
        np.testing.assert_allclose(metrics["loss/value"], vf, atol=1e-5)
        np.testing.assert_allclose(loss, pg + 0.1 * vf, atol=1e-5)
        assert 0.0 < float(metrics["policy/clipfrac"]) < 1.0

    def test_masked_ppo_equals_trl_masked_means(self):
        from trl.core import masked_mean

        rollout = self._rollout(21)
        loss, metrics = ppo.ppo(**rollout, mask=self.mask)
        m = torch_f64(self.mask).bool()
        ratio = torch.exp(torch_f64(rollout["logps"]) - torch_f64(rollout["old_logps"]))
        adv = torch_f64(rollout["advantages"])
        pg = masked_mean(torch.max(-adv * ratio, -adv * torch.clamp(ratio, 0.8, 1.2)), m).item()
        vpred, ret, old = torch_f64(rollout["values"]), torch_f64(rollout["returns"]), torch_f64(rollout["old_values"])
        vclip = torch.clamp(vpred, old - 0.2, old + 0.2)
        vf = 0.5 * masked_mean(torch.max((vpred - ret) ** 2, (vclip - ret) ** 2), m).item()
        np.testing.assert_allclose(metrics["loss/policy"], pg, atol=1e-5)
        np.testing.assert_allclose(metrics["loss/value"], vf, atol=1e-5)
        # Padding with garbage outside the mask changes nothing.
        padded = {k: np.pad(v, ((0, 0), (0, 2)), constant_values=7.0) for k, v in rollout.items()}
        padded_loss, _ = ppo.ppo(**padded, mask=np.pad(self.mask, ((0, 0), (0, 2))))
        np.testing.assert_allclose(padded_loss, loss, atol=1e-5)

    def test_ppo_gradient_matches_finite_differences(self):
        rollout = self._rollout(22)
        # Keep the ratio inside the clip range so the loss is smooth at the test point.
        rollout["logps"] = rollout["old_logps"] + 0.05
        rollout["values"] = rollout["old_values"] + 0.05
        fn = lambda lp, v: ppo.ppo(**{**rollout, "logps": lp, "values": v}, mask=self.mask)[0]
        check_grads(
            fn,
            (jnp.asarray(rollout["logps"]), jnp.asarray(rollout["values"])),
            order=1,
            modes=["rev"],
            atol=1e-2,
            rtol=1e-2,
        )
