"""Continuous batching: one engine thread owns the slots; HTTP threads submit requests and read events.

Each loop turn of the engine thread:
  1. drops cancelled requests (a client went away) and frees their slots;
  2. admits waiting prompts, first come first served, while enough slots are free (a prompt with n
     choices needs n slots; its one prefill is copied into all of them);
  3. runs ONE decode step for all slots (`engine.decode_step`) and hands each active slot's token to
     its choice, which may finish (EOS, a stop string, max_tokens) and free the slot.
All slots write the same cache column per step (see engine.py). Admission keeps the invariant that
every running row can write all its remaining tokens before that column reaches the context:
max(column, prompt) + max(remaining tokens of the new and the running rows) <= max_context. When a
request does not fit, the rows are compacted to the front (`engine.compact`) if that makes it fit,
else it waits for rows to finish; with no row running the column simply restarts at 0.
A request that arrives while others decode therefore joins at the next step, and a slot freed at
step t is reused at step t + 1. When nothing is active the thread sleeps on a condition variable.
There is no per-request loop: the only loop is over decode steps of the whole slot batch.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alignax.sample.sampler import row_keys_for
from alignax.serve import engine
from alignax.serve.sequences import (
    MAX_TOP_LOGPROBS,
    Choice,
    ErrorEvent,
    Event,
    Request,
    SamplingOptions,
    TokenInfo,
    find_stop,
    held_back,
)

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class Metrics:
    """Counters for /debug/metrics: evidence that requests share decode steps, and what compiled."""

    decode_compiled: bool = False
    compact_compiled: bool = False
    decode_steps: int = 0
    rows_stepped: int = 0
    max_rows_in_step: int = 0
    max_requests_in_step: int = 0
    prefills: int = 0
    compactions: int = 0
    prefill_buckets: set = dataclasses.field(default_factory=set)
    requests_finished: int = 0
    tokens_generated: int = 0
    decode_seconds: float = 0.0
    prefill_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["prefill_buckets"] = sorted(self.prefill_buckets)
        d["compiled_programs"] = {
            "decode_step": int(self.decode_compiled or self.decode_steps > 0),
            "prefill_into_slots": len(self.prefill_buckets),
            "compact": int(self.compact_compiled or self.compactions > 0),
        }
        d["mean_rows_per_step"] = self.rows_stepped / self.decode_steps if self.decode_steps else 0.0
        return d


@dataclasses.dataclass
class _Occupant:
    request: Request
    choice: Choice
    length: int  # cache columns this row holds (prompt[:-1] + tokens fed so far)

    @property
    def remaining(self) -> int:
        return self.request.options.max_tokens - self.choice.generated


class Batcher:
    """Owns the model's slots and the engine thread. `submit` / `cancel` are thread-safe."""

    def __init__(self, model, tokenizer, *, max_batch: int, max_context: int, eos_ids: Sequence[int]):
        self.tokenizer = tokenizer
        self.max_batch, self.max_context = int(max_batch), int(max_context)
        self.eos_ids = frozenset(int(e) for e in eos_ids)
        self.top_n = min(MAX_TOP_LOGPROBS, model.cfg.vocab_size)
        self._graphdef, self._state = nnx.split(model)
        self._model = model
        self._slots = engine.init_slots(model, self.max_batch, self.max_context)
        self._free = list(range(self.max_batch))
        self._column = 0  # host copy of the shared cache column (the cache's "index")
        self._next_segment = 1
        self._occupants: dict[int, _Occupant] = {}
        self._pending: collections.deque = collections.deque()  # (request, prompt index)
        self._wake = threading.Condition()
        self._stopping = False
        self.metrics = Metrics()
        self._thread = threading.Thread(target=self._run, name="alignax-serve-engine", daemon=True)

    # -- called from HTTP threads ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def submit(self, request: Request) -> None:
        with self._wake:
            if self._stopping:
                raise RuntimeError("server is shutting down")
            self._pending.extend((request, i) for i in range(len(request.prompts)))
            self._wake.notify_all()

    def cancel(self, request: Request) -> None:
        request.cancelled.set()
        with self._wake:
            self._wake.notify_all()

    def warmup(self, prompt_lengths: Sequence[int]) -> None:
        """Compiles the decode step and the prefill buckets of these prompt lengths (before serving)."""
        for length in prompt_lengths:
            self._prefill(Request([[0] * length], SamplingOptions(max_tokens=1, temperature=0.0)), 0)
            self._step()
        self._release_all(None)
        self._slots = engine.compact(self._slots, np.zeros((self.max_batch,), bool))
        self._column = 0
        # Serving counters start at zero; what compiled stays recorded.
        self.metrics = Metrics(
            prefill_buckets=set(self.metrics.prefill_buckets), decode_compiled=True, compact_compiled=True
        )

    # -- the engine thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    break
                if not self._occupants and not self._pending:
                    self._wake.wait(timeout=0.5)
                    continue
            try:
                self._drop_cancelled()
                self._admit()
                if self._occupants:
                    self._step()
            except Exception as e:  # a failed step must not hang every client
                _log.exception("engine step failed")
                self._release_all(f"engine error: {type(e).__name__}: {e}")
                self._slots = engine.init_slots(self._model, self.max_batch, self.max_context)
                self._column = 0
        self._release_all("server is shutting down")

    def _drop_cancelled(self) -> None:
        for slot, occ in list(self._occupants.items()):
            if occ.request.cancelled.is_set():
                self._free_slot(slot)
        with self._wake:
            self._pending = collections.deque(p for p in self._pending if not p[0].cancelled.is_set())

    def _admit(self) -> None:
        while True:
            with self._wake:
                if not self._pending or len(self._free) < self._pending[0][0].options.n:
                    return
                request, prompt_index = self._pending[0]
                if not self._make_room(len(request.prompts[prompt_index]) - 1, request.options.max_tokens):
                    return
                self._pending.popleft()
            self._prefill(request, prompt_index)

    def _fits(self, column: int, prefix_len: int, max_tokens: int) -> bool:
        need = max([max_tokens] + [o.remaining for o in self._occupants.values()])
        return max(column, prefix_len) + need <= self.max_context

    def _make_room(self, prefix_len: int, max_tokens: int) -> bool:
        """Whether a prompt can be admitted now (compacting the cache if that is what it takes)."""
        if not self._occupants:
            if self._column:  # nothing runs: restart at column 0 (old segments stay invisible)
                self._slots = self._slots._replace(cache=dict(self._slots.cache, index=jnp.zeros((), jnp.int32)))
                self._column = 0
            return True
        if self._fits(self._column, prefix_len, max_tokens):
            return True
        compacted = max(o.length for o in self._occupants.values())
        if compacted >= self._column or not self._fits(compacted, prefix_len, max_tokens):
            return False
        self._slots = engine.compact(self._slots, self._active_mask())
        self._column = compacted
        self.metrics.compactions += 1
        return True

    def _prefill(self, request: Request, prompt_index: int) -> None:
        started = time.perf_counter()
        prompt, options = request.prompts[prompt_index], request.options
        choices = [c for c in request.choices if c.prompt_index == prompt_index]
        prefix = prompt[:-1]
        bucket = engine.prefill_bucket(len(prefix), self.max_context)
        ids = np.zeros((1, bucket), np.int32)
        ids[0, : len(prefix)] = prefix
        slots = [self._free.pop(0) for _ in choices]
        targets = np.full((self.max_batch,), self.max_batch, np.int32)
        targets[: len(slots)] = slots
        segments = np.zeros((self.max_batch,), np.int32)
        segments[: len(slots)] = np.arange(self._next_segment, self._next_segment + len(slots))
        self._next_segment += len(slots)
        keys = np.zeros((self.max_batch, 2), np.uint32)
        keys[: len(slots)] = row_keys_for(request.seed, [prompt_index] * self.max_batch, list(range(self.max_batch)))[
            : len(slots)
        ]
        self._slots = engine.prefill_into_slots(
            self._graphdef,
            self._state,
            self._slots,
            ids,
            np.int32(len(prefix)),
            targets,
            segments,
            np.int32(len(slots)),
            np.int32(prompt[-1]),
            keys,
            np.float32(options.temperature),
            np.float32(options.top_p),
        )
        for slot, choice in zip(slots, choices):
            self._occupants[slot] = _Occupant(request, choice, len(prefix))
        self._column = max(self._column, len(prefix))
        self.metrics.prefills += 1
        self.metrics.prefill_buckets.add(bucket)
        self.metrics.prefill_seconds += time.perf_counter() - started

    def _step(self) -> None:
        started = time.perf_counter()
        active = self._active_mask()
        want_top = np.asarray(any(o.request.options.top_logprobs > 0 for o in self._occupants.values()))
        self._slots, out = engine.decode_step(
            self._graphdef, self._state, self._slots, active, want_top, top_n=self.top_n
        )
        self._column += 1
        for occ in self._occupants.values():
            occ.length += 1
        tokens, logps, top_ids, top_logps = jax.device_get(out)
        m = self.metrics
        m.decode_steps += 1
        m.rows_stepped += int(active.sum())
        m.max_rows_in_step = max(m.max_rows_in_step, int(active.sum()))
        requests_in_step = len({id(o.request) for o in self._occupants.values()})
        m.max_requests_in_step = max(m.max_requests_in_step, requests_in_step)
        m.decode_seconds += time.perf_counter() - started
        for slot, occ in list(self._occupants.items()):
            top = tuple(zip(top_ids[slot].tolist(), top_logps[slot].tolist()))
            self._advance(slot, occ, TokenInfo(int(tokens[slot]), float(logps[slot]), top))

    def _active_mask(self) -> np.ndarray:
        active = np.zeros((self.max_batch,), bool)
        active[list(self._occupants)] = True
        return active

    def _advance(self, slot: int, occ: _Occupant, info: TokenInfo) -> None:
        """Adds one sampled token to a choice; emits its event; frees the slot when it finishes."""
        choice, options = occ.choice, occ.request.options
        choice.generated += 1
        self.metrics.tokens_generated += 1
        is_eos = info.token_id in self.eos_ids and not options.ignore_eos
        new_tokens = () if is_eos else (info,)
        if not is_eos:
            choice.token_ids.append(info.token_id)
        finish = "stop" if is_eos else ("length" if choice.generated >= options.max_tokens else None)
        text = None
        if options.stop or options.stream or finish:
            text = self.tokenizer.decode(choice.token_ids)
            cut = find_stop(text, options.stop) if options.stop else -1
            if cut >= 0:
                text, finish = text[:cut], "stop"
        release = ""
        if text is not None:
            end = len(text) if finish else len(text) - held_back(text, options.stop)
            if end > len(choice.released) and (finish or options.stream):
                release = text[len(choice.released) : end]
                choice.released += release
        choice.finish_reason = finish
        occ.request.events.put(Event(choice.index, release, new_tokens, finish, choice.generated))
        if finish:
            self._free_slot(slot)
            if all(c.finish_reason for c in occ.request.choices):
                self.metrics.requests_finished += 1

    def _free_slot(self, slot: int) -> None:
        self._occupants.pop(slot, None)
        self._free.append(slot)
        self._free.sort()

    def _release_all(self, error: str | None) -> None:
        """Frees every slot and fails every waiting or running request with `error`."""
        with self._wake:
            requests = {id(o.request): o.request for o in self._occupants.values()}
            requests.update({id(r): r for r, _ in self._pending})
            self._pending.clear()
        for slot in list(self._occupants):
            self._free_slot(slot)
        if error is not None:
            for request in requests.values():
                request.events.put(ErrorEvent(error))
