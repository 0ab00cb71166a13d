"""TrainState and the one jitted train step that every method uses.

Read top to bottom: split the batch into k micro-batches, scan value-and-grad over them
(gradient accumulation), normalize, clip + update with optax, guard against NaN/Inf.

Normalization under accumulation (the bug TRL and unsloth users keep hitting): token-normalized
methods (SFT, SoFT) divide each micro-batch's summed NLL by the token count of the WHOLE batch and
the micro-losses are added; example-mean methods (DPO family) average the k micro-batch means,
which equals the large-batch mean because every micro-batch holds the same number of examples.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from alignax.models import lora

Batch = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar
    params: Any  # nnx.State of the trainable nnx.Param variables
    opt_state: Any
    rng: jax.Array  # a raw uint32 PRNG key (checkpointable)


def count_target_tokens(batch: Batch) -> jax.Array:
    """Number of predicted tokens in a (possibly [k, ...]-stacked) batch: the SFT normalizer."""
    seg = batch["segment_ids"]
    same = (seg[..., 1:] == seg[..., :-1]) & (seg[..., 1:] > 0)
    return jnp.sum(batch["loss_mask"][..., 1:].astype(jnp.float32) * same)


def make_train_step(
    *,
    graphdef: nnx.GraphDef,
    non_trainable: Any,
    method_fn: Callable,
    method_kwargs: dict,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    grad_accum_steps: int,
    nan_policy: str = "stop",
    ref_graphdef: nnx.GraphDef | None = None,
    base_reference: bool = False,
):
    """Build `train_step(state, batch, ref_params, frozen) -> (state, metrics)` (pure; jit it with
    shardings).

    `batch` leaves are [grad_accum_steps, micro_rows, ...]. `ref_params` is the frozen reference's
    full nnx.State (or None). `non_trainable` holds the model's other variables; pass them as
    `frozen` (a jit argument, not a constant baked into the program: with LoRA they are the whole
    base model). `base_reference` (LoRA): the reference is the policy with its adapters switched off
    (`alignax.models.lora.without_adapters`), no second copy of the weights. Adapter dropout draws
    its keys from fold_in(state.rng, micro-batch)."""
    if nan_policy not in ("stop", "skip"):
        raise ValueError(f"nan_policy={nan_policy!r}; expected 'stop' or 'skip'")
    token_normalized = getattr(method_fn, "token_normalized", False)

    def loss_fn(params, micro_batch, ref_params, num_tokens, frozen, rng):
        model = nnx.merge(graphdef, params, frozen)
        ref_model = reference_model(model, ref_graphdef, ref_params, base_reference)
        lora.train_mode(model, rng)
        loss, metrics = method_fn(model, micro_batch, ref_model=ref_model, num_tokens=num_tokens, **method_kwargs)
        return loss, metrics

    def train_step(state: TrainState, batch: Batch, ref_params=None, frozen=None):
        frozen = non_trainable if frozen is None else frozen
        num_tokens = count_target_tokens(batch)
        loss_scale = 1.0 if token_normalized else 1.0 / grad_accum_steps

        def accumulate(grad_sum, micro):
            micro_batch, index = micro
            rng = jax.random.fold_in(state.rng, index)
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state.params, micro_batch, ref_params, num_tokens, frozen, rng
            )
            grad_sum = jax.tree.map(lambda acc, g: acc + g * loss_scale, grad_sum, grads)
            return grad_sum, (loss * loss_scale, metrics)

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        micro_index = jnp.arange(grad_accum_steps, dtype=jnp.uint32)
        grads, (micro_losses, micro_metrics) = jax.lax.scan(accumulate, zeros, (batch, micro_index))
        loss = jnp.sum(micro_losses)
        metrics = jax.tree.map(lambda m: jnp.mean(m.astype(jnp.float32)), micro_metrics)

        grad_norm = optax.global_norm(grads)
        updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)

        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if nan_policy == "skip":
            keep = functools.partial(jnp.where, finite)
            new_params = jax.tree.map(keep, new_params, state.params)
            new_opt_state = jax.tree.map(keep, new_opt_state, state.opt_state)

        metrics = dict(metrics)
        metrics.update(
            loss=loss,
            grad_norm=grad_norm,
            learning_rate=schedule(state.step),
            num_tokens=num_tokens,
            nonfinite=1.0 - finite.astype(jnp.float32),
        )
        new_state = state.replace(
            step=state.step + 1, params=new_params, opt_state=new_opt_state, rng=jax.random.fold_in(state.rng, 1)
        )
        return new_state, metrics

    return train_step


def reference_model(model, ref_graphdef, ref_params, base_reference: bool):
    """The reference policy: the base model under the adapters (LoRA), the frozen copy, or None."""
    if base_reference:
        return lora.without_adapters(model)
    return nnx.merge(ref_graphdef, ref_params) if ref_params is not None else None


def make_eval_step(
    *,
    graphdef,
    non_trainable,
    method_fn: Callable,
    method_kwargs: dict,
    ref_graphdef=None,
    base_reference: bool = False,
):
    """`eval_step(params, batch, ref_params, frozen) -> metrics` on one [rows, ...] batch, no
    gradients, no dropout."""

    def eval_step(params, batch, ref_params=None, frozen=None):
        model = nnx.merge(graphdef, params, non_trainable if frozen is None else frozen)
        ref_model = reference_model(model, ref_graphdef, ref_params, base_reference)
        loss, metrics = method_fn(
            model, batch, ref_model=ref_model, num_tokens=count_target_tokens(batch), **method_kwargs
        )
        return dict(metrics, loss=loss)

    return eval_step
