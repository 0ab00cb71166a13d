"""NaN/Inf guard (issue 5): `nan_policy=stop` stops with a message naming the step and the metric,
before the bad step is checkpointed; `nan_policy=skip` leaves params and optimizer state unchanged."""

import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from alignax.train.loop import train
from alignax.train.step import TrainState, make_train_step

# Adam moves every weight by ~lr at the first step: lr 1e30 makes the weights ~1e30, and the next
# forward pass overflows float32 (RMSNorm squares them), so step 2 is the first non-finite step.
HUGE_LR = {"optimizer.learning_rate": 1e30, "optimizer.grad_clip_norm": 0.0}


def tiny_config(**overrides):
    config = importlib.import_module("configs.simpo").get_config("tiny")
    config.update_from_flattened_dict(
        {
            "export": False,
            "data.eval": "",
            "data.length_multiple": 64,
            "mesh.num_devices": 1,
            "checkpoint_every": 1,
            "keep_checkpoints": 10,
            **overrides,
        }
    )
    return config


def test_stop_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError, match=r"non-finite .*loss.* at step 2\b"):
        train(tiny_config(total_steps=4, **HUGE_LR), str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]  # the bad step was never saved
    with open(tmp_path / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [1]


def _restore_params(checkpoint_dir):
    restored = ocp.StandardCheckpointer().restore(os.path.join(checkpoint_dir, "state"))
    return restored["params"], restored["opt_state"]


def test_skip_leaves_params_unchanged(tmp_path, capsys):
    train(tiny_config(total_steps=3, nan_policy="skip", **HUGE_LR), str(tmp_path))
    assert "at step 2" in capsys.readouterr().out
    with open(tmp_path / "metrics.jsonl") as f:
        flags = [json.loads(line)["nonfinite"] for line in f]
    assert flags == [0.0, 1.0, 1.0]
    after_1, opt_1 = _restore_params(tmp_path / "checkpoints" / "1")
    after_3, opt_3 = _restore_params(tmp_path / "checkpoints" / "3")
    jax.tree.map(np.testing.assert_array_equal, after_3, after_1)
    jax.tree.map(np.testing.assert_array_equal, opt_3, opt_1)  # Adam's moments and count too


class _Linear(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.arange(3.0))


def test_step_with_injected_nan_is_skipped_and_a_finite_one_is_not():
    """Unit level: a loss that is NaN for one batch; the skip policy keeps params and opt state."""
    graphdef, params, rest = nnx.split(_Linear(), nnx.Param, ...)

    def method(model, batch, *, ref_model, num_tokens, **_):
        loss = jnp.sum(model.w[...] * batch["x"][0])
        return loss, {}

    optimizer = optax.adam(0.1)
    schedule = optax.constant_schedule(0.1)
    step = jax.jit(
        make_train_step(
            graphdef=graphdef,
            non_trainable=rest,
            method_fn=method,
            method_kwargs={},
            optimizer=optimizer,
            schedule=schedule,
            grad_accum_steps=1,
            nan_policy="skip",
        )
    )
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        rng=jax.random.key_data(jax.random.PRNGKey(0)),
    )

    def batch(x):
        ones = jnp.ones((1, 1, 2), jnp.int32)
        return {"x": jnp.asarray([[x]], jnp.float32), "segment_ids": ones, "loss_mask": ones}

    good, metrics = step(state, batch([1.0, 1.0, 1.0]))
    assert float(metrics["nonfinite"]) == 0.0
    assert not np.allclose(good.params["w"][...], params["w"][...])
    skipped, metrics = step(good, batch([1.0, jnp.nan, 1.0]))
    assert float(metrics["nonfinite"]) == 1.0 and int(skipped.step) == 2
    jax.tree.map(np.testing.assert_array_equal, skipped.params, good.params)
    jax.tree.map(np.testing.assert_array_equal, skipped.opt_state, good.opt_state)
