"""DPO family: closed forms, symmetry, dtypes, masks, gradients, and TRL 0.19.1 as the peer."""

import functools
import math
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from alignax.losses import dpo_family as dpo_lib
from alignax.losses import dpo_variants as variants_lib
from alignax.losses import kto as kto_lib
from alignax.losses import reference_free as reffree_lib
from alignax.losses import registry

B = 8
# Names whose functions take the paired contract (chosen/rejected/ref/lengths).
PAIRED_WITH_REF = [
    "sigmoid",
    "dpo",
    "robust",
    "ipo",
    "hinge",
    "exo_pair",
    "nca_pair",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_pair",
    "apo_zero",
    "apo_down",
    "discopop",
    "ln_dpo",
]
REFERENCE_FREE = ["simpo", "cpo", "orpo"]
ALL_PAIRED = PAIRED_WITH_REF + REFERENCE_FREE


def _pair_batch(seed, batch=B):
    rng = np.random.default_rng(seed)
    lengths_w = rng.integers(4, 64, size=batch).astype(np.float32)
    lengths_l = rng.integers(4, 64, size=batch).astype(np.float32)
    # Log-probs of roughly -0.2..-2 nats per token, reference near the policy.
    chosen = -(lengths_w * rng.uniform(0.2, 2.0, batch)).astype(np.float32)
    rejected = -(lengths_l * rng.uniform(0.2, 2.0, batch)).astype(np.float32)
    ref_chosen = (chosen + rng.normal(0, 3, batch)).astype(np.float32)
    ref_rejected = (rejected + rng.normal(0, 3, batch)).astype(np.float32)
    return dict(
        chosen_logps=chosen,
        rejected_logps=rejected,
        ref_chosen_logps=ref_chosen,
        ref_rejected_logps=ref_rejected,
        chosen_lengths=lengths_w,
        rejected_lengths=lengths_l,
    )


def _call(name, batch, **hparams):
    return registry.get(name)(**batch, **hparams)


# ------------------------------------------------------------------ registry / contract


def test_every_name_is_registered_to_the_dpo_family_modules():
    modules = {dpo_lib.__name__, variants_lib.__name__, reffree_lib.__name__, kto_lib.__name__}
    for name in ALL_PAIRED + ["kto", "sigmoid_norm", "aot_unpaired"]:
        assert registry.get(name).__module__ in modules, name
    for name in ("simpo", "cpo", "orpo"):
        assert registry.get(name).__module__ == reffree_lib.__name__, name
    assert registry.get("kto").__module__ == kto_lib.__name__
    assert registry.get("dpo") is registry.get("sigmoid")


def test_hyperparameters_are_keyword_only():
    with pytest.raises(TypeError):
        dpo_lib.dpo(*[np.zeros(3)] * 4)


def test_bad_shape_error_names_the_tensor():
    batch = _pair_batch(0)
    batch["rejected_logps"] = batch["rejected_logps"][:5]
    with pytest.raises(ValueError, match="rejected_logps"):
        _call("dpo", batch)


# ------------------------------------------------------------------ closed forms, jit and no jit


def _at(margin_w, margin_l, *, lengths=(1.0, 1.0), policy=(-3.0, -3.0)):
    """A batch where ρ_w = margin_w, ρ_l = margin_l for every row (ref = policy − ρ)."""
    chosen = np.full(B, policy[0], np.float32)
    rejected = np.full(B, policy[1], np.float32)
    return dict(
        chosen_logps=chosen,
        rejected_logps=rejected,
        ref_chosen_logps=(chosen - margin_w).astype(np.float32),
        ref_rejected_logps=(rejected - margin_l).astype(np.float32),
        chosen_lengths=np.full(B, lengths[0], np.float32),
        rejected_lengths=np.full(B, lengths[1], np.float32),
    )


LOG2 = math.log(2.0)
CLOSED_FORMS = [
    # (test name, loss name, batch, hyperparameters, expected value from the formula)
    ("dpo_zero_margin", "dpo", _at(0.7, 0.7), dict(beta=0.1), LOG2),
    ("cdpo_zero_margin", "sigmoid", _at(0.0, 0.0), dict(beta=0.1, label_smoothing=0.3), LOG2),
    ("robust_eps0_zero_margin", "robust", _at(0.0, 0.0), dict(label_smoothing=0.0), LOG2),
    # rDPO at h = 0: [(1-ε) log2 - ε log2] / (1-2ε) = log 2.
    ("robust_zero_margin", "robust", _at(0.0, 0.0), dict(label_smoothing=0.2), LOG2),
    ("ipo_seq_target", "ipo", _at(5.0, 0.0), dict(beta=0.1, length_normalize=False), 0.0),
    # length-normalized: ρ_w/|y_w| − ρ_l/|y_l| = 20/4 − 0 = 5 = 1/(2·0.1)
    ("ipo_norm_target", "ipo", _at(20.0, 0.0, lengths=(4.0, 9.0)), dict(beta=0.1), 0.0),
    ("ipo_seq_zero", "ipo", _at(1.0, 1.0), dict(beta=0.25, length_normalize=False), 4.0),
    ("hinge_zero_margin", "hinge", _at(0.0, 0.0), dict(beta=0.5), 1.0),
    ("hinge_at_margin", "hinge", _at(2.0, 0.0), dict(beta=0.5), 0.0),
    (
        "exo_zero_margin",
        "exo_pair",
        _at(0.0, 0.0),
        dict(label_smoothing=1e-3),
        0.5 * (math.log(0.5) - math.log(1 - 1e-3)) + 0.5 * (math.log(0.5) - math.log(1e-3)),
    ),
    ("nca_zero", "nca_pair", _at(0.0, 0.0), {}, 2 * LOG2),
    ("bco_at_delta", "bco_pair", _at(3.0, 3.0), dict(beta=0.1, delta=0.3), 2 * LOG2),
    ("sppo_hard_targets", "sppo_hard", _at(5.0, -5.0), dict(beta=0.1), 0.0),
    ("sppo_hard_zero", "sppo_hard", _at(0.0, 0.0), dict(beta=0.1), 50.0),
    ("aot_zero", "aot", _at(0.0, 0.0), {}, LOG2),
    ("aot_pair_zero", "aot_pair", _at(0.4, 0.4), {}, LOG2),
    ("apo_zero_zero", "apo_zero", _at(0.0, 0.0), {}, 1.0),
    ("apo_down_zero", "apo_down", _at(0.0, 0.0), {}, 1.0),
    ("discopop_zero", "discopop", _at(0.0, 0.0), {}, 0.5 * LOG2 + 0.5),
    ("ln_dpo_equal_normalized", "ln_dpo", _at(8.0, 2.0, lengths=(8.0, 2.0)), dict(beta=10.0), LOG2),
    # SimPO with γ = 0 and equal average log-probs: log 2.
    ("simpo_equal_avg", "simpo", _at(0, 0, lengths=(4.0, 2.0), policy=(-8.0, -4.0)), dict(gamma_beta_ratio=0.0), LOG2),
    # ... and with γ: −log σ(−γ) = softplus(γ), γ = β·ratio = 0.5.
    ("simpo_margin", "simpo", _at(0, 0, lengths=(4.0, 2.0), policy=(-8.0, -4.0)), {}, math.log1p(math.exp(0.5))),
    # CPO: sigmoid on equal summed log-probs plus α·NLL = log 2 + α·(3/1).
    ("cpo_equal", "cpo", _at(0, 0), dict(cpo_alpha=0.5), LOG2 + 1.5),
    # ORPO: equal averages -> log odds ratio 0 -> λ log 2 + NLL(= 3 nats/token).
    ("orpo_equal", "orpo", _at(0, 0), dict(beta=0.1), 0.1 * LOG2 + 3.0),
]


class ClosedFormTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CLOSED_FORMS)
    def test_value(self, name, batch, hparams, expected):
        fn = self.variant(functools.partial(registry.get(name), **hparams))
        loss, metrics = fn(**batch)
        chex.assert_shape(loss, ())
        np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
        for key, value in metrics.items():
            chex.assert_shape(value, (), custom_message=key)

    @chex.variants(with_jit=True, without_jit=True)
    def test_kto_at_reference_point(self):
        # r = z0 for every example -> each loss is λ/2.
        logps = np.full(B, -4.0, np.float32)
        desirable = np.arange(B) % 2 == 0
        fn = self.variant(functools.partial(kto_lib.kto, beta=0.1, desirable_weight=1.0, undesirable_weight=2.0))
        loss, metrics = fn(logps=logps, ref_logps=logps - 0.25, desirable=desirable, kl_baseline=0.25)
        np.testing.assert_allclose(loss, (0.5 * 1.0 + 0.5 * 2.0) / 2, rtol=1e-6)
        np.testing.assert_allclose(metrics["count/chosen"], 4)


# ------------------------------------------------------------------ dtype, symmetry, masking


@pytest.mark.parametrize("name", ALL_PAIRED)
def test_bf16_inputs_give_fp32_loss(name):
    batch = {k: jnp.asarray(v, jnp.bfloat16) for k, v in _pair_batch(1).items()}
    loss, metrics = jax.jit(registry.get(name))(**batch)
    assert loss.dtype == jnp.float32
    assert all(v.dtype == jnp.float32 for v in metrics.values()), {k: v.dtype for k, v in metrics.items()}
    # bf16 inputs are upcast before any arithmetic: same as fp32 on the bf16-rounded values.
    rounded = {k: np.asarray(v.astype(jnp.float32)) for k, v in batch.items()}
    np.testing.assert_allclose(loss, registry.get(name)(**rounded)[0], rtol=1e-6)


@pytest.mark.parametrize("name", ALL_PAIRED)
def test_swapping_chosen_and_rejected_flips_margins_and_accuracy(name):
    batch = _pair_batch(2)
    swapped = dict(batch)
    for a, b in [
        ("chosen_logps", "rejected_logps"),
        ("ref_chosen_logps", "ref_rejected_logps"),
        ("chosen_lengths", "rejected_lengths"),
    ]:
        swapped[a], swapped[b] = batch[b], batch[a]
    _, m = _call(name, batch)
    _, m_swapped = _call(name, swapped)
    np.testing.assert_allclose(m_swapped["rewards/margins"], -m["rewards/margins"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m_swapped["rewards/accuracies"], 1.0 - m["rewards/accuracies"], atol=1e-6)
    np.testing.assert_allclose(m_swapped["rewards/chosen"], m["rewards/rejected"], rtol=1e-6)


@pytest.mark.parametrize("name", ["dpo", "ipo", "hinge", "ln_dpo", "simpo"])
def test_loss_decreases_as_the_margin_grows(name):
    batch = _pair_batch(3)
    better = dict(batch, chosen_logps=batch["chosen_logps"] + 0.5, rejected_logps=batch["rejected_logps"] - 0.5)
    hparams = dict(length_normalize=False) if name == "ipo" else {}
    if name == "ipo":  # IPO pulls the margin towards 1/(2β): start below the target.
        batch = _at(0.0, 0.0)
        better = _at(0.5, 0.0)
    assert _call(name, better, **hparams)[0] < _call(name, batch, **hparams)[0]


@pytest.mark.parametrize("name", ALL_PAIRED)
def test_padded_examples_do_not_change_the_result(name):
    batch = _pair_batch(4)
    garbage = _pair_batch(99, batch=3)
    padded = {k: np.concatenate([batch[k], garbage[k] * 7.0]) for k in batch}
    example_mask = np.concatenate([np.ones(B), np.zeros(3)]).astype(np.float32)
    loss, metrics = _call(name, batch)
    loss_padded, metrics_padded = jax.jit(registry.get(name))(**padded, example_mask=example_mask)
    np.testing.assert_allclose(loss_padded, loss, rtol=1e-5)
    for key in metrics:
        np.testing.assert_allclose(metrics_padded[key], metrics[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_kto_padded_examples_do_not_change_the_result():
    rng = np.random.default_rng(5)
    logps, ref = -rng.uniform(5, 50, 11).astype(np.float32), -rng.uniform(5, 50, 11).astype(np.float32)
    desirable = rng.uniform(size=11) < 0.5
    mask = (np.arange(11) < B).astype(np.float32)
    full = kto_lib.kto(logps=logps[:B], ref_logps=ref[:B], desirable=desirable[:B], kl_baseline=0.3)
    padded = kto_lib.kto(logps=logps, ref_logps=ref, desirable=desirable, kl_baseline=0.3, example_mask=mask)
    np.testing.assert_allclose(padded[0], full[0], rtol=1e-6)


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("name", ALL_PAIRED)
def test_gradients_match_finite_differences(name):
    # Scale to O(1) per-token values so fp32 central differences are accurate.
    batch = {k: (v / 10.0 if "logps" in k else v) for k, v in _pair_batch(6).items()}
    if name in ("hinge",):
        batch = dict(batch, chosen_logps=batch["chosen_logps"] - 30.0)  # stay on the linear side of the kink
    fixed = {k: jnp.asarray(v) for k, v in batch.items() if k not in ("chosen_logps", "rejected_logps")}
    fn = registry.get(name)

    def loss_of(chosen, rejected):
        return fn(chosen_logps=chosen, rejected_logps=rejected, **fixed)[0]

    check_grads(
        loss_of,
        (jnp.asarray(batch["chosen_logps"]), jnp.asarray(batch["rejected_logps"])),
        order=1,
        modes=["rev"],
        eps=1e-2,
        atol=2e-3,
        rtol=2e-3,
    )


@pytest.mark.parametrize("name", PAIRED_WITH_REF)
def test_reference_logps_get_no_gradient(name):
    batch = _pair_batch(7)
    grads = jax.grad(
        lambda rc, rr: _call(name, dict(batch, ref_chosen_logps=rc, ref_rejected_logps=rr))[0], argnums=(0, 1)
    )(jnp.asarray(batch["ref_chosen_logps"]), jnp.asarray(batch["ref_rejected_logps"]))
    for g in grads:
        np.testing.assert_array_equal(g, 0.0)


def test_kto_gradient_matches_finite_differences_and_z0_is_detached():
    rng = np.random.default_rng(8)
    logps = -rng.uniform(0.5, 5, B).astype(np.float32)
    ref = -rng.uniform(0.5, 5, B).astype(np.float32)
    desirable = np.arange(B) % 3 != 0
    loss_of = lambda lp, z0: kto_lib.kto(logps=lp, ref_logps=ref, desirable=desirable, kl_baseline=z0, beta=0.5)[0]
    check_grads(
        lambda lp: loss_of(lp, 0.2), (jnp.asarray(logps),), order=1, modes=["rev"], eps=1e-2, atol=2e-3, rtol=2e-3
    )
    assert jax.grad(loss_of, argnums=1)(jnp.asarray(logps), 0.2) == 0.0
    kl = jax.grad(lambda p: kto_lib.kto_kl_baseline(p, ref))(jnp.asarray(logps) + 5.0)
    np.testing.assert_array_equal(kl, 0.0)


# ------------------------------------------------------------------ the peer: TRL 0.19.1


@pytest.fixture(scope="module")
def trl():
    torch = pytest.importorskip("torch")
    trl_mod = pytest.importorskip("trl")
    assert trl_mod.__version__ == "0.19.1", trl_mod.__version__
    from trl import CPOTrainer, DPOTrainer, KTOTrainer, ORPOTrainer
    from trl.trainer.utils import RunningMoments

    return types.SimpleNamespace(
        torch=torch,
        DPOTrainer=DPOTrainer,
        CPOTrainer=CPOTrainer,
        ORPOTrainer=ORPOTrainer,
        KTOTrainer=KTOTrainer,
        RunningMoments=RunningMoments,
    )


def _t(trl, x):
    return trl.torch.tensor(np.asarray(x, np.float32))


def _dpo_self(loss_type, *, beta, label_smoothing=0.0, running=None, discopop_tau=0.05):
    """The attributes DPOTrainer.dpo_loss reads (TRL 0.19.1, trl/trainer/dpo_trainer.py)."""
    return types.SimpleNamespace(
        beta=beta,
        label_smoothing=label_smoothing,
        loss_type=loss_type,
        reference_free=False,
        f_divergence_type="reverse_kl",
        f_divergence_params=None,
        accelerator=types.SimpleNamespace(device="cpu"),
        running=running,
        args=types.SimpleNamespace(discopop_tau=discopop_tau),
    )


def _assert_same_as_trl(loss, metrics, losses, chosen_rewards, rejected_rewards, tol=1e-5):
    np.testing.assert_allclose(loss, losses.mean().item(), rtol=tol, atol=tol)
    np.testing.assert_allclose(metrics["rewards/chosen"], chosen_rewards.mean().item(), rtol=tol, atol=tol)
    np.testing.assert_allclose(metrics["rewards/rejected"], rejected_rewards.mean().item(), rtol=tol, atol=tol)
    np.testing.assert_allclose(
        metrics["rewards/margins"], (chosen_rewards - rejected_rewards).mean().item(), rtol=tol, atol=tol
    )
    np.testing.assert_allclose(
        metrics["rewards/accuracies"], (chosen_rewards > rejected_rewards).float().mean().item(), atol=1e-7
    )


DPO_PEER_CASES = [
    # (alignax name, TRL loss_type, beta, label_smoothing, extra alignax hyperparameters)
    ("sigmoid", "sigmoid", 0.1, 0.0, {}),
    ("dpo", "sigmoid", 0.3, 0.2, {}),
    ("robust", "robust", 0.2, 0.1, {}),
    ("robust", "robust", 0.1, 0.3, {}),
    ("exo_pair", "exo_pair", 0.1, 1e-3, {}),
    ("exo_pair", "exo_pair", 0.4, 0.05, {}),
    ("hinge", "hinge", 0.1, 0.0, {}),
    ("hinge", "hinge", 0.7, 0.0, {}),
    ("nca_pair", "nca_pair", 0.2, 0.0, {}),
    ("sppo_hard", "sppo_hard", 0.1, 0.0, {}),
    ("aot", "aot", 0.2, 0.0, {}),
    ("aot", "aot", 0.2, 0.1, {}),
    ("aot_pair", "aot_pair", 0.3, 0.0, {}),
    ("aot_pair", "aot_pair", 0.3, 0.2, {}),
    ("apo_zero", "apo_zero", 0.1, 0.0, {}),
    ("apo_down", "apo_down", 0.25, 0.0, {}),
    ("discopop", "discopop", 0.05, 0.0, dict(tau=0.05)),
    ("discopop", "discopop", 0.1, 0.0, dict(tau=0.2)),
    ("ipo", "ipo", 0.1, 0.0, dict(length_normalize=False)),
]


@pytest.mark.parametrize("name,loss_type,beta,eps,extra", DPO_PEER_CASES)
@pytest.mark.parametrize("seed", [10, 11])
def test_matches_trl_dpo_loss(trl, name, loss_type, beta, eps, extra, seed):
    batch = _pair_batch(seed)
    losses, chosen_r, rejected_r = trl.DPOTrainer.dpo_loss(
        _dpo_self(loss_type, beta=beta, label_smoothing=eps, discopop_tau=extra.get("tau", 0.05)),
        *[_t(trl, batch[k]) for k in ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")],
    )
    hparams = dict(beta=beta, **extra)
    if name in ("sigmoid", "dpo", "robust", "exo_pair", "aot", "aot_pair"):
        hparams["label_smoothing"] = eps
    loss, metrics = jax.jit(functools.partial(registry.get(name), **hparams))(**batch)
    _assert_same_as_trl(loss, metrics, losses, chosen_r, rejected_r)


@pytest.mark.parametrize("seed", [12, 13])
def test_ipo_length_normalized_matches_trl(trl, seed):
    # TRL 0.19 divides policy and reference log-probs by the completion length before dpo_loss
    # when loss_type == "ipo" (concatenated_forward); alignax takes summed log-probs + lengths.
    batch = _pair_batch(seed)
    normalized = [
        batch[k] / batch[n]
        for k, n in [
            ("chosen_logps", "chosen_lengths"),
            ("rejected_logps", "rejected_lengths"),
            ("ref_chosen_logps", "chosen_lengths"),
            ("ref_rejected_logps", "rejected_lengths"),
        ]
    ]
    losses, chosen_r, rejected_r = trl.DPOTrainer.dpo_loss(
        _dpo_self("ipo", beta=0.1), *[_t(trl, x) for x in normalized]
    )
    loss, metrics = dpo_lib.ipo(**batch, beta=0.1, length_normalize=True)
    _assert_same_as_trl(loss, metrics, losses, chosen_r, rejected_r)


def test_bco_pair_matches_trl_with_running_mean(trl):
    running = trl.RunningMoments(accelerator=types.SimpleNamespace(use_distributed=False))
    mean, count = jnp.float32(0.0), jnp.float32(1e-24)  # TRL's initial RunningMoments state
    for seed in (20, 21, 22):
        batch = _pair_batch(seed)
        losses, chosen_r, rejected_r = trl.DPOTrainer.dpo_loss(
            _dpo_self("bco_pair", beta=0.2, running=running),
            *[_t(trl, batch[k]) for k in ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")],
        )
        # TRL updates the running mean with this batch's rewards before using it.
        mean, count = dpo_lib.bco_update_running_mean(
            mean,
            count,
            chosen_rewards=0.2 * (batch["chosen_logps"] - batch["ref_chosen_logps"]),
            rejected_rewards=0.2 * (batch["rejected_logps"] - batch["ref_rejected_logps"]),
        )
        np.testing.assert_allclose(mean, running.mean, rtol=1e-5)
        loss, metrics = dpo_lib.bco_pair(**batch, beta=0.2, delta=mean)
        _assert_same_as_trl(loss, metrics, losses, chosen_r, rejected_r)


def _cpo_self(loss_type, *, beta, label_smoothing=0.0, simpo_gamma=0.5):
    return types.SimpleNamespace(
        beta=beta,
        label_smoothing=label_smoothing,
        loss_type=loss_type,
        simpo_gamma=simpo_gamma,
        accelerator=types.SimpleNamespace(device="cpu"),
    )


@pytest.mark.parametrize(
    "loss_type,beta,eps",
    [
        ("sigmoid", 0.1, 0.0),
        ("sigmoid", 0.5, 0.1),
        ("simpo", 2.0, 0.0),
        ("simpo", 2.5, 0.1),
        ("ipo", 0.1, 0.0),
        ("hinge", 0.2, 0.0),
    ],
)
def test_cpo_matches_trl(trl, loss_type, beta, eps):
    batch = _pair_batch(30)
    averaged = loss_type in ("ipo", "simpo")  # TRL: average_log_prob = loss_type in ["ipo", "simpo"]
    w = batch["chosen_logps"] / (batch["chosen_lengths"] if averaged else 1.0)
    l = batch["rejected_logps"] / (batch["rejected_lengths"] if averaged else 1.0)
    losses, chosen_r, rejected_r = trl.CPOTrainer.cpo_loss(
        _cpo_self(loss_type, beta=beta, label_smoothing=eps, simpo_gamma=0.8), _t(trl, w), _t(trl, l)
    )
    loss, metrics = reffree_lib.cpo(
        **batch, beta=beta, label_smoothing=eps, loss_type=loss_type, simpo_gamma=0.8, cpo_alpha=0.0
    )
    _assert_same_as_trl(loss, metrics, losses, chosen_r, rejected_r)


@pytest.mark.parametrize("beta,ratio,eps", [(2.0, 0.25, 0.0), (10.0, 0.3, 0.0), (2.5, 0.55, 0.1)])
def test_simpo_matches_trl_cpo_simpo(trl, beta, ratio, eps):
    batch = _pair_batch(31)
    losses, chosen_r, rejected_r = trl.CPOTrainer.cpo_loss(
        _cpo_self("simpo", beta=beta, label_smoothing=eps, simpo_gamma=beta * ratio),
        _t(trl, batch["chosen_logps"] / batch["chosen_lengths"]),
        _t(trl, batch["rejected_logps"] / batch["rejected_lengths"]),
    )
    loss, metrics = reffree_lib.simpo(**batch, beta=beta, gamma_beta_ratio=ratio, label_smoothing=eps)
    _assert_same_as_trl(loss, metrics, losses, chosen_r, rejected_r)


def _token_level_batch(trl, seed):
    """Random logits/labels: summed response log-probs + lengths, and torch's CE on the same tokens."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (B, 12, 17)).astype(np.float32)
    labels = rng.integers(0, 17, (B, 12))
    labels[rng.uniform(size=labels.shape) < 0.3] = -100  # prompt / padding
    labels[:, 0] = 3  # at least one response token per row
    logp = trl.torch.log_softmax(_t(trl, logits), -1).gather(-1, trl.torch.tensor(np.maximum(labels, 0))[..., None])[
        ..., 0
    ]
    mask = labels != -100
    summed = (logp.numpy() * mask).sum(-1).astype(np.float32)
    ce = trl.torch.nn.functional.cross_entropy(
        _t(trl, logits).reshape(-1, 17), trl.torch.tensor(labels).reshape(-1), ignore_index=-100
    ).item()
    return summed, mask.sum(-1).astype(np.float32), ce


def test_cpo_and_orpo_nll_term_is_tokenwise_cross_entropy(trl):
    chosen, lengths, ce = _token_level_batch(trl, 32)
    batch = _pair_batch(32)
    batch.update(chosen_logps=chosen, chosen_lengths=lengths)
    with_nll = reffree_lib.cpo(**batch, cpo_alpha=0.7)[0] - reffree_lib.cpo(**batch, cpo_alpha=0.0)[0]
    np.testing.assert_allclose(with_nll, 0.7 * ce, rtol=1e-5)
    np.testing.assert_allclose(reffree_lib.orpo(**batch)[1]["nll_loss"], ce, rtol=1e-5)


@pytest.mark.parametrize("beta", [0.1, 0.25])
def test_orpo_matches_trl(trl, beta):
    batch = _pair_batch(33)
    avg_w, avg_l = batch["chosen_logps"] / batch["chosen_lengths"], batch["rejected_logps"] / batch["rejected_lengths"]
    self_ = types.SimpleNamespace(beta=beta, accelerator=types.SimpleNamespace(device="cpu"))
    losses, chosen_r, rejected_r, log_odds_ratio, log_odds_chosen = trl.ORPOTrainer.odds_ratio_loss(
        self_, _t(trl, avg_w), _t(trl, avg_l)
    )
    nll = 1.234  # ORPO's total = policy_nll_loss - losses.mean() (ORPOTrainer.get_batch_loss_metrics)
    loss, metrics = reffree_lib.orpo(**batch, beta=beta, chosen_nll=nll)
    _assert_same_as_trl(loss, metrics, nll - losses, chosen_r, rejected_r)
    np.testing.assert_allclose(metrics["log_odds_ratio"], log_odds_ratio.item(), rtol=1e-5)
    np.testing.assert_allclose(metrics["log_odds_chosen"], log_odds_chosen.item(), rtol=1e-5)


@pytest.mark.parametrize("kl_shift,weights", [(+2.0, (1.0, 1.0)), (-2.0, (1.0, 1.33)), (+0.5, (0.8, 1.0))])
def test_kto_matches_trl(trl, kl_shift, weights):
    rng = np.random.default_rng(40)
    logps = -rng.uniform(5, 60, B).astype(np.float32)
    ref = (logps + rng.normal(0, 3, B)).astype(np.float32)
    desirable = np.array([1, 0, 1, 1, 0, 0, 1, 0], bool)
    kl_logps = -rng.uniform(5, 60, B).astype(np.float32)
    ref_kl = (kl_logps - kl_shift + rng.normal(0, 0.5, B)).astype(np.float32)
    self_ = types.SimpleNamespace(
        beta=0.1,
        loss_type="kto",
        calculate_KL=True,
        desirable_weight=weights[0],
        undesirable_weight=weights[1],
        accelerator=types.SimpleNamespace(device="cpu", gather_for_metrics=lambda x: x),
    )
    losses, chosen_r, rejected_r, kl = trl.KTOTrainer.kto_loss(
        self_,
        _t(trl, logps[desirable]),
        _t(trl, logps[~desirable]),
        _t(trl, kl_logps),
        _t(trl, ref[desirable]),
        _t(trl, ref[~desirable]),
        _t(trl, ref_kl),
    )
    z0 = kto_lib.kto_kl_baseline(kl_logps, ref_kl)
    np.testing.assert_allclose(z0, kl.item(), rtol=1e-5, atol=1e-6)
    loss, metrics = jax.jit(
        functools.partial(kto_lib.kto, beta=0.1, desirable_weight=weights[0], undesirable_weight=weights[1])
    )(logps=logps, ref_logps=ref, desirable=desirable, kl_baseline=z0)
    np.testing.assert_allclose(loss, losses.nanmean().item(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["rewards/chosen"], chosen_r.mean().item(), rtol=1e-5)
    np.testing.assert_allclose(metrics["rewards/rejected"], rejected_r.mean().item(), rtol=1e-5)
