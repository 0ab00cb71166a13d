"""Merge formulas on blocks of one tensor: task arithmetic, TIES, DARE (numpy, no I/O).

Notation: base θ₀, models θ₁..θ_K, deltas (task vectors) δ_k = θ_k − θ₀, weights w_k, scale λ.

- Task arithmetic (Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023):
      θ = θ₀ + λ Σ_k w_k δ_k.
- DARE (Yu et al., "Language Models are Super Mario", ICML 2024, §3, Eq. for drop and rescale):
      δ̂_k = m_k ⊙ δ_k / d_k,  m_k ~ Bernoulli(d_k) elementwise,
  d_k = `density` = 1 − p (drop rate p), the name mergekit uses. E[δ̂_k] = δ_k.
  dare_linear = task arithmetic on δ̂_k; dare_ties = TIES sign election on δ̂_k.
- TIES (Yadav et al., "TIES-Merging", NeurIPS 2023, §3): trim each δ_k to its k = ⌊d_k·n⌋ entries of
  largest |δ_k|; elect γ = sgn(Σ_k w_k δ_k) per entry ("sum" consensus, γ = +1 where the sum is 0); disjoint
  merge over the models whose weighted delta has sign γ:
      τ = Σ_k w_k δ_k [sgn(w_k δ_k) = γ] / Σ_k w_k [sgn(w_k δ_k) = γ]   (denominator 0 → 1),
      θ = θ₀ + λ τ.

Weights and normalisation follow mergekit (arcee-ai/mergekit, merge_methods/registry.py and
generalized_task_arithmetic.py, read in PyPI mergekit 0.1.5 and at GitHub commit a6e4028): the sum above is
divided by the (masked) weight sum only when `normalize` is on, which is the default for `ties` alone;
task_arithmetic, dare_linear and dare_ties default to no normalisation; λ ("lambda") defaults to 1; mergekit
requires a weight per model, here each defaults to 1. Without consensus the divisor is Σ_k w_k
(|Σ| < 1e-8 → 1). Differences from mergekit, chosen deliberately:
- DARE rescales survivors by 1/d_k as in the paper (and mergekit before v0.1.0); mergekit ≥ v0.1.0 instead
  rescales the masked delta so its L1 norm equals the unmasked one (sparsify.rescaled_masked_tensor). Both
  have E[δ̂] ≈ δ; they agree to O(1/√n) per tensor. Masks come from numpy's PCG64 seeded per (seed, model,
  tensor name), not torch.bernoulli, so only their distribution matches mergekit's.
- `density` must be given for ties/dare_* (mergekit defaults it to 1, which makes DARE and the trim no-ops).
- Arithmetic runs in float32 (float64 for float64 tensors) whatever the storage dtype, then casts back to the
  base tensor's dtype; mergekit computes in the loaded dtype. For float32 models the results are identical.
- TIES keeps at least one entry (as mergekit 0.1.5; older mergekit asserted k > 0); among entries whose |δ|
  ties with the k-th largest, the first ones in C order are kept (mergekit: whatever argsort returns).
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

HIST_BINS = 1 << 16


@dataclasses.dataclass(frozen=True)
class Method:
    """One merge method: which sparsifier (a SPARSIFIERS key or None), sign consensus, default normalize."""

    name: str
    sparsifier: str | None
    consensus: bool
    default_normalize: bool
    reference: str


METHODS = {
    m.name: m
    for m in (
        Method("task_arithmetic", None, False, False, "Ilharco et al. 2023, arXiv 2212.04089"),
        Method("ties", "magnitude", True, True, "Yadav et al. 2023, arXiv 2306.01708"),
        Method("dare_linear", "dare", False, False, "Yu et al. 2024, arXiv 2311.03099"),
        Method("dare_ties", "dare", True, False, "Yu et al. 2024, arXiv 2311.03099"),
    )
}


def tensor_seed(seed: int, model_index: int, name: str) -> np.random.SeedSequence:
    """The DARE mask seed of one (model, tensor): (seed, model position, sha256(name)) — stable across runs."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return np.random.SeedSequence([seed, model_index, digest])


class DareDrop:
    """DARE drop-and-rescale of one delta, block by block: δ̂ = [u < d] · δ / d with u ~ U[0, 1).

    One generator per (seed, model, tensor) draws uniforms in C order, so the mask does not depend on the
    block size. d ≥ 1 is the identity (nothing drawn), as in the paper's p = 0 and in mergekit.
    """

    passes = 0

    def __init__(self, density: float, numel: int, seed: np.random.SeedSequence):
        del numel
        self.density = density
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def apply(self, delta: np.ndarray) -> np.ndarray:
        if self.density >= 1:
            return delta
        keep = self.rng.random(delta.shape) < self.density
        return np.where(keep, delta / delta.dtype.type(self.density), delta.dtype.type(0))


class MagnitudeTrim:
    """TIES trim of one delta: keep its k = max(1, ⌊d·n⌋) entries of largest |δ| (ranked in float32).

    The k-th largest |δ| is found without holding the tensor: |δ| as float32 bit patterns (uint32, ordered
    like the values for non-negative floats) go through a two-pass radix select, 16 bits per pass, over the
    blocks (`observe` each block, then `end_pass`). `apply` then keeps |δ| > t and the first k − #(|δ| > t)
    entries equal to t in C order.
    """

    passes = 2

    def __init__(self, density: float, numel: int, seed: np.random.SeedSequence):
        del seed
        self.k = numel if density >= 1 else max(1, int(density * numel))
        self.passes = 2 if self.k < numel else 0
        self.pass_no, self.prefix, self.above = 0, 0, 0
        self.hist = np.zeros(HIST_BINS, np.int64)
        self.ties_left = 0

    @staticmethod
    def _bits(delta: np.ndarray) -> np.ndarray:
        return np.abs(delta.astype(np.float32, copy=False)).ravel().view(np.uint32)

    def observe(self, delta: np.ndarray) -> None:
        bits = self._bits(delta)
        if self.pass_no == 1:
            bits = bits[(bits >> 16) == self.prefix] & 0xFFFF
        else:
            bits = bits >> 16
        self.hist += np.bincount(bits.astype(np.intp), minlength=HIST_BINS)

    def end_pass(self) -> None:
        """Picks the 16-bit digit holding the k-th largest entry, counting entries in higher digits."""
        from_top = np.cumsum(self.hist[::-1])
        j = int(np.searchsorted(from_top, self.k - self.above))
        digit = HIST_BINS - 1 - j
        self.above += int(from_top[j] - self.hist[digit])
        self.prefix = (self.prefix << 16) | digit if self.pass_no == 1 else digit
        self.pass_no += 1
        self.hist[:] = 0
        self.ties_left = self.k - self.above

    def apply(self, delta: np.ndarray) -> np.ndarray:
        if not self.passes:
            return delta
        bits = self._bits(delta).reshape(delta.shape)
        threshold = np.uint32(self.prefix)
        keep = bits > threshold
        tie = bits == threshold
        tie_rank = np.cumsum(tie.ravel()).reshape(delta.shape)
        keep |= tie & (tie_rank <= self.ties_left)
        self.ties_left = max(0, self.ties_left - int(tie.sum()))
        return np.where(keep, delta, delta.dtype.type(0))


SPARSIFIERS = {"dare": DareDrop, "magnitude": MagnitudeTrim}


def combine(deltas: np.ndarray, weights: np.ndarray, *, consensus: bool, normalize: bool, lam: float) -> np.ndarray:
    """λ · (Σ_k w_k δ_k, sign-masked if `consensus`) [/ masked Σ_k w_k if `normalize`] for stacked deltas [K, ...].

    Sign election and masking as in TIES (Yadav et al. 2023, §3 "Elect", "Disjoint merge") with mergekit's
    "sum" consensus (generalized_task_arithmetic.get_mask): γ = +1 where Σ_k w_k δ_k ≥ 0, else −1.
    """
    w = weights.astype(deltas.dtype).reshape((-1,) + (1,) * (deltas.ndim - 1))
    weighted = deltas * w
    if consensus:
        elected = np.where(weighted.sum(axis=0) >= 0, 1, -1).astype(deltas.dtype)
        agree = (np.sign(weighted) == elected).astype(deltas.dtype)
        mixed = (weighted * agree).sum(axis=0)
        divisor = (w * agree).sum(axis=0)
        divisor = np.where(divisor == 0, deltas.dtype.type(1), divisor)
    else:
        mixed = weighted.sum(axis=0)
        divisor = w.sum()
        divisor = divisor if abs(divisor) >= 1e-8 else deltas.dtype.type(1)
    if normalize:
        mixed = mixed / divisor
    if lam != 1:
        mixed = mixed * deltas.dtype.type(lam)
    return mixed
