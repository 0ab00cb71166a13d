"""alignax.ops: chunked log-prob kernel vs the naive full-logits computation; stats; numerics."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from alignax import ops
from alignax.ops import numerics

B, T, D, V = 3, 37, 16, 101  # T and V prime: no chunk size below divides them


@pytest.fixture(scope="module")
def problem():
    k_h, k_w, k_l, k_m, k_g = jax.random.split(jax.random.PRNGKey(0), 5)
    hidden = jax.random.normal(k_h, (B, T, D), jnp.float32)
    head = jax.random.normal(k_w, (D, V), jnp.float32) / np.sqrt(D) * 3.0
    labels = jax.random.randint(k_l, (B, T), 0, V)
    labels = labels.at[:, :5].set(-100)  # prompt positions: TRL's ignore index
    labels = labels.at[1, 20:].set(-1)  # a shorter (right-padded) row
    mask = (jax.random.uniform(k_m, (B, T)) > 0.2).astype(jnp.float32)  # ragged loss mask
    cotangent = jax.random.normal(k_g, (B, T), jnp.float32)  # a generic downstream weighting
    return dict(hidden=hidden, head=head, labels=labels, mask=mask, cotangent=cotangent)


def _reference_from_torch_style_formula(hidden, head, labels, mask):
    """Independent numpy float64 reference: log_softmax then gather."""
    logits = np.einsum("btd,dv->btv", np.asarray(hidden, np.float64), np.asarray(head, np.float64))
    logits -= logits.max(-1, keepdims=True)
    logsm = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    labels = np.asarray(labels)
    out = np.take_along_axis(logsm, np.maximum(labels, 0)[..., None], -1)[..., 0]
    return np.where((labels >= 0) & (np.asarray(mask) != 0), out, 0.0)


def test_naive_matches_float64_numpy(problem):
    got = ops.token_logprobs_naive(problem["hidden"], problem["head"], problem["labels"], problem["mask"])
    want = _reference_from_torch_style_formula(problem["hidden"], problem["head"], problem["labels"], problem["mask"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got.dtype == jnp.float32


CHUNKINGS = [
    dict(testcase_name="seq5", chunk_size=5, vocab_chunk_size=None),
    dict(testcase_name="seq1", chunk_size=1, vocab_chunk_size=None),
    dict(testcase_name="seq_over_length", chunk_size=1000, vocab_chunk_size=None),
    dict(testcase_name="seq8_vocab16", chunk_size=8, vocab_chunk_size=16),
    dict(testcase_name="seq13_vocab7", chunk_size=13, vocab_chunk_size=7),
    dict(testcase_name="seq4_vocab100", chunk_size=4, vocab_chunk_size=100),
]


class ChunkedEqualsNaiveTest(chex.TestCase):
    @pytest.fixture(autouse=True)
    def _problem(self, problem):
        self.p = problem

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CHUNKINGS)
    def test_values_and_grads(self, chunk_size, vocab_chunk_size):
        p = self.p
        chunked = functools.partial(ops.token_logprobs, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size)

        def objective(fn, hidden, head):
            # A generic scalar of the per-token values: tests the full vector-Jacobian product.
            return jnp.sum(fn(hidden, head, p["labels"], p["mask"]) * p["cotangent"])

        got = self.variant(chunked)(p["hidden"], p["head"], p["labels"], p["mask"])
        want = ops.token_logprobs_naive(p["hidden"], p["head"], p["labels"], p["mask"])
        chex.assert_shape(got, (B, T))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(got)[np.asarray(p["labels"]) < 0], 0.0)
        np.testing.assert_array_equal(np.asarray(got)[np.asarray(p["mask"]) == 0], 0.0)

        grad_fn = lambda fn: jax.grad(functools.partial(objective, fn), argnums=(0, 1))
        g_hidden, g_head = self.variant(grad_fn(chunked))(p["hidden"], p["head"])
        w_hidden, w_head = grad_fn(ops.token_logprobs_naive)(p["hidden"], p["head"])
        np.testing.assert_allclose(g_hidden, w_hidden, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g_head, w_head, rtol=1e-5, atol=1e-5)
        # Ignored positions get no gradient into their hidden state.
        ignored = (np.asarray(p["labels"]) < 0) | (np.asarray(p["mask"]) == 0)
        np.testing.assert_array_equal(np.asarray(g_hidden)[ignored], 0.0)


def test_bf16_inputs_give_fp32_logprobs_close_to_naive(problem):
    hidden, head = problem["hidden"].astype(jnp.bfloat16), problem["head"].astype(jnp.bfloat16)
    got = ops.token_logprobs(hidden, head, problem["labels"], chunk_size=6, vocab_chunk_size=32)
    want = ops.token_logprobs_naive(hidden, head, problem["labels"])
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_packed_rows_give_each_sequence_its_own_sum(problem):
    """Two sequences packed in one row = the same two sequences in separate rows."""
    hidden, head = problem["hidden"][:2, :15], problem["head"]
    labels = problem["labels"][:2, 5:15]  # 10 valid labels each
    h_a, h_b = hidden[0, 5:15], hidden[1, 5:12]
    l_a, l_b = labels[0], labels[1, :7]
    packed_hidden = jnp.concatenate([h_a, h_b, jnp.zeros((3, D))])[None]  # [1, 20, D]
    packed_labels = jnp.concatenate([l_a, l_b, jnp.full((3,), -100, l_a.dtype)])[None]
    segment_ids = jnp.array([[1] * 10 + [2] * 7 + [0] * 3])
    token_lp = ops.token_logprobs(packed_hidden, head, packed_labels, chunk_size=6)
    sums = ops.segment_sums(token_lp, segment_ids, num_segments=3)
    counts = ops.segment_counts(segment_ids, num_segments=3, mask=packed_labels >= 0)
    want_a = ops.token_logprobs_naive(h_a[None], head, l_a[None]).sum()
    want_b = ops.token_logprobs_naive(h_b[None], head, l_b[None]).sum()
    np.testing.assert_allclose(sums, [[want_a, want_b, 0.0]], rtol=1e-5)
    np.testing.assert_array_equal(counts, [[10, 7, 0]])
    np.testing.assert_allclose(
        ops.segment_means(token_lp, segment_ids, num_segments=3, mask=packed_labels >= 0),
        [[want_a / 10, want_b / 7, 0.0]],
        rtol=1e-5,
    )


def test_logprobs_from_logits_matches_log_softmax():
    logits = jax.random.normal(jax.random.PRNGKey(3), (2, 5, 9)) * 10
    labels = jnp.array([[0, 8, -100, 3, 4], [1, 1, 1, -1, 2]])
    got = ops.logprobs_from_logits(logits, labels)
    full = jax.nn.log_softmax(logits.astype(jnp.float64) if jax.config.jax_enable_x64 else logits)
    want = np.where(labels >= 0, np.take_along_axis(np.asarray(full), np.maximum(labels, 0)[..., None], -1)[..., 0], 0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_bad_inputs_name_the_tensor(problem):
    with pytest.raises(ValueError, match="head_weight"):
        ops.token_logprobs(problem["hidden"], problem["head"].T, problem["labels"])
    with pytest.raises(TypeError, match="labels"):
        ops.token_logprobs(problem["hidden"], problem["head"], problem["labels"].astype(jnp.float32))
    with pytest.raises(AssertionError, match="labels"):
        ops.token_logprobs(problem["hidden"], problem["head"], problem["labels"][:, :-1])


def _temp_bytes(fn, *args):
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_chunked_gradient_never_holds_full_logits():
    """Compiled temp memory of value+grad: naive holds [B, T, V] fp32; chunked only [B, C, Vc]."""
    b, t, d, v = 2, 256, 32, 8192
    hidden = jax.ShapeDtypeStruct((b, t, d), jnp.float32)
    head = jax.ShapeDtypeStruct((d, v), jnp.float32)
    labels = jax.ShapeDtypeStruct((b, t), jnp.int32)

    def value_and_grad(fn):
        return lambda h, w, l: jax.value_and_grad(lambda h, w: fn(h, w, l).sum(), argnums=(0, 1))(h, w)

    full_logits = b * t * v * 4
    naive = _temp_bytes(value_and_grad(ops.token_logprobs_naive), hidden, head, labels)
    chunked = _temp_bytes(
        value_and_grad(functools.partial(ops.token_logprobs, chunk_size=16, vocab_chunk_size=1024)),
        hidden,
        head,
        labels,
    )
    assert naive >= full_logits, (naive, full_logits)
    # Chunked temp: a few [b, 16, 1024] fp32 slices plus parameter-sized buffers (grad of head).
    assert chunked < full_logits / 4, (chunked, full_logits)
    # Growing the vocabulary 4x grows the chunked temp by at most head-sized buffers ([d, V] fp32),
    # not by token-sized logits ([b, t, V]).
    bigger_head = jax.ShapeDtypeStruct((d, 4 * v), jnp.float32)
    chunked_big = _temp_bytes(
        value_and_grad(functools.partial(ops.token_logprobs, chunk_size=16, vocab_chunk_size=1024)),
        hidden,
        bigger_head,
        labels,
    )
    assert chunked_big - chunked <= 2 * d * 3 * v * 4, (chunked, chunked_big)


# ------------------------------------------------------------------ sequence stats


def test_sequence_stats_against_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 9)).astype(np.float32)
    mask = (rng.uniform(size=(4, 9)) > 0.4).astype(np.float32)
    mask[2] = 0  # an empty row: mean must be 0, not NaN
    values[3, ~mask[3].astype(bool)] = np.nan  # masked NaNs must not leak
    stats = ops.sequence_stats(values, mask)
    want_sum = np.nansum(np.where(mask != 0, values, 0), -1)
    np.testing.assert_allclose(stats["sum"], want_sum, rtol=1e-6)
    np.testing.assert_allclose(stats["count"], mask.sum(-1))
    np.testing.assert_allclose(
        stats["mean"], np.where(mask.sum(-1) > 0, want_sum / np.maximum(mask.sum(-1), 1), 0), rtol=1e-6
    )
    assert np.all(np.isfinite(stats["mean"]))


def test_segment_sums_against_numpy_loop():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(3, 20)).astype(np.float32)
    segment_ids = np.sort(rng.integers(0, 5, size=(3, 20)), axis=-1)[:, ::-1]  # padding (0) at the end
    mask = rng.uniform(size=(3, 20)) > 0.3
    got = ops.segment_sums(values, jnp.asarray(segment_ids), num_segments=4, mask=mask)
    want = np.zeros((3, 4))
    for b in range(3):
        for t in range(20):
            if segment_ids[b, t] > 0 and mask[b, t]:
                want[b, segment_ids[b, t] - 1] += values[b, t]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    chex.assert_shape(got, (3, 4))


# ------------------------------------------------------------------ numerics


def test_log1mexp_is_accurate_on_both_branches():
    a = np.array([-1e-10, -1e-5, -0.1, -0.69, -0.7, -2.0, -20.0, -80.0])
    mpmath = pytest.importorskip("mpmath")  # 50-digit reference, independent of either branch
    mpmath.mp.dps = 50
    want = np.array([float(mpmath.log(1 - mpmath.exp(mpmath.mpf(x)))) for x in a])
    with jax.enable_x64(True):
        got64 = numerics.log1mexp(jnp.asarray(a, jnp.float64))
    np.testing.assert_allclose(got64, want, rtol=1e-12)
    got32 = numerics.log1mexp(jnp.asarray(a, jnp.float32))
    np.testing.assert_allclose(got32, want, rtol=1e-5)
    # Finite gradients on both sides of the switch point (where-branches must not leak NaN).
    assert np.all(np.isfinite(jax.vmap(jax.grad(numerics.log1mexp))(jnp.asarray(a[:-1], jnp.float32))))


def test_log_sigmoid_and_softplus_are_stable():
    x = jnp.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    np.testing.assert_allclose(numerics.log_sigmoid(x), jax.nn.log_sigmoid(x), rtol=1e-6)
    np.testing.assert_allclose(numerics.softplus(x), jax.nn.softplus(x), rtol=1e-6)
    assert np.all(np.isfinite(jax.vmap(jax.grad(numerics.log_sigmoid))(x)))


def test_log_sigmoid_and_softplus_gradients_match_sigmoid_everywhere_including_zero():
    # d/dx log σ(x) = σ(-x) and d/dx softplus(x) = σ(x); x = 0 is where every DPO run starts
    # (policy == reference), so a kink-handling error there changes the first update.
    x = jnp.array([-20.0, -1.0, -1e-8, 0.0, 1e-8, 1.0, 20.0])
    np.testing.assert_allclose(jax.vmap(jax.grad(numerics.log_sigmoid))(x), jax.nn.sigmoid(-x), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(jax.grad(numerics.softplus))(x), jax.nn.sigmoid(x), rtol=1e-6)


def test_masked_whiten_matches_unbiased_definition():
    rng = np.random.default_rng(2)
    x = rng.normal(3, 2, size=(4, 6)).astype(np.float32)
    mask = rng.uniform(size=(4, 6)) > 0.3
    sel = x[mask].astype(np.float64)
    want = (x - sel.mean()) / np.sqrt(sel.var(ddof=1) + 1e-8)
    np.testing.assert_allclose(np.asarray(numerics.masked_whiten(x, mask))[mask], want[mask], rtol=1e-4, atol=1e-5)


def test_batch_sharded_inputs_stay_sharded_and_match():
    """With hidden sharded over the batch (8 fake CPU devices), the kernel runs per shard."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    devices = jax.devices()
    if len(devices) < 2:
        pytest.skip("needs the fake multi-device CPU set up by conftest")
    n = len(devices)
    mesh = Mesh(np.array(devices).reshape(n), ("data",))
    k_h, k_w, k_l = jax.random.split(jax.random.PRNGKey(4), 3)
    hidden = jax.random.normal(k_h, (n, 12, 8))
    head = jax.random.normal(k_w, (8, 50))
    labels = jax.random.randint(k_l, (n, 12), -1, 50)
    batch_sharding = NamedSharding(mesh, P("data"))
    hidden_s = jax.device_put(hidden, batch_sharding)
    labels_s = jax.device_put(labels, batch_sharding)
    head_r = jax.device_put(head, NamedSharding(mesh, P()))
    fn = jax.jit(functools.partial(ops.token_logprobs, chunk_size=5, vocab_chunk_size=16))
    out = fn(hidden_s, head_r, labels_s)
    np.testing.assert_allclose(out, ops.token_logprobs_naive(hidden, head, labels), rtol=1e-5, atol=1e-5)
    assert out.sharding.is_equivalent_to(batch_sharding, out.ndim), out.sharding
