"""Judges: prompts against their published sources, the HTTP client against a real local HTTP
server (retries, backoff, cache, concurrency, usage, key hygiene), and the local-model judge
against a softmax of the model's own logits."""

import http.server
import json
import math
import threading
import time

import numpy as np
import pytest

from alignax.evaluate.judges import base, prompts
from alignax.evaluate.judges import http as judge_http

SECRET = "sk-test-SECRET-0123456789abcdef"
KEY_ENV = "ALIGNAX_TEST_JUDGE_KEY"


# ------------------------------------------------------------------------------------- prompts
def test_alpaca_eval_prompt_equals_package_file_and_rendering():
    import pathlib

    import alpaca_eval
    import pandas as pd
    from alpaca_eval import utils as ae_utils

    path = (
        pathlib.Path(alpaca_eval.__file__).parent
        / "evaluators_configs"
        / "alpaca_eval_clf_gpt4_turbo"
        / "alpaca_eval_clf.txt"
    )
    template = path.read_text()
    assert prompts.ALPACA_EVAL_CLF == template
    df = pd.DataFrame([{"instruction": "Say hi {politely}", "output_1": "Hi.\n\nBye", "output_2": 'He said "hi"'}])
    rendered, _ = ae_utils.make_prompts(df, template)
    expected = ae_utils.prompt_to_chatml(rendered[0])
    assert prompts.alpaca_eval_messages(**df.iloc[0].to_dict()) == expected


def test_mt_bench_prompts_equal_fastchat_file(evaldata_dir):
    path = evaldata_dir / "mt_bench/fastchat/llm_judge/data/judge_prompts.jsonl"
    published = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(published) == len(prompts.MT_BENCH) == 8
    for row in published:
        ours = prompts.MT_BENCH[row["name"]]
        assert (ours.kind, ours.system_prompt, ours.prompt_template, ours.output_format) == (
            row["type"],
            row["system_prompt"],
            row["prompt_template"],
            row["output_format"],
        )
    assert prompts.mt_bench_prompt_name(category="coding", turn=2) == "single-math-v1-multi-turn"
    assert prompts.mt_bench_prompt_name(category="writing", turn=1, pairwise=True) == "pair-v2"


@pytest.mark.parametrize(
    "text, label",
    [
        ("My final verdict is: [[B>>A]]", "B>>A"),
        ("[[A=B]] ... again [[A=B]]", "A=B"),
        ("[[A>B]] but then [[B>A]]", None),  # conflicting verdicts: no battle
        ("verdict [A>B]", "A>B"),  # single-bracket fallback
        ("no verdict", None),
    ],
)
def test_arena_hard_verdict(text, label):
    assert prompts.parse_arena_hard_verdict(text) == label


def test_wildbench_prompts_and_parsers():
    text = prompts.wildbench_score_prompt(history="", user_query="Q?", model_output="A.", checklist=["c1", "c2"])
    assert "{$" not in text and "- c1\n- c2" in text and "<|begin_of_response|>\n\nA.\n\n" in text
    pair = prompts.wildbench_pairwise_prompt(
        history="h", user_query="q", candidate_a="x", candidate_b="y", checklist="- c"
    )
    assert "{$" not in pair and "<|begin_of_response_B|>\n\ny\n\n" in pair
    assert prompts.parse_wildbench_score('```\n{"strengths": "a", "weaknesses": "b", "score": "8"}\n```') == 8.0
    assert prompts.parse_wildbench_score('{"score": "11"}') is None
    assert prompts.parse_wildbench_score("no json") is None
    assert prompts.parse_wildbench_choice('{"analysis of A": "...", "choice": "B+",}') == "B+"
    assert prompts.parse_wildbench_choice('{"choice": "C"}') is None


def test_alpaca_preference_from_logprobs():
    top = [
        {"token": "M", "logprob": math.log(0.6)},
        {"token": "m", "logprob": math.log(0.3)},
        {"token": "x", "logprob": math.log(0.05)},
    ]
    assert prompts.parse_alpaca_eval_logprobs(top) == pytest.approx(2 - 0.3 / 0.9)
    assert math.isnan(prompts.parse_alpaca_eval_logprobs([{"token": "x", "logprob": 0.0}]))


# ------------------------------------------------------------------------- fake OpenAI server
class FakeOpenAI:
    """Answers like an OpenAI chat-completions endpoint; `script` lists per-request behaviours."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.script, self.requests, self.in_flight, self.max_in_flight = [], [], 0, 0
        self.delay_s = 0.0

    def next_behaviour(self, body, headers):
        with self.lock:
            self.requests.append({"body": body, "authorization": headers.get("Authorization")})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.script.pop(0) if self.script else "ok"

    def done(self):
        with self.lock:
            self.in_flight -= 1


def _handler(fake):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status, payload, headers=()):
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            behaviour = fake.next_behaviour(body, self.headers)
            try:
                if behaviour == "timeout":
                    time.sleep(0.6)
                    return self._send(200, {"choices": [{"message": {"content": "late"}}]})
                if behaviour == "429":
                    return self._send(429, {"error": "rate limited"}, headers=[("Retry-After", "3")])
                if behaviour == "500":
                    return self._send(500, {"error": "boom"})
                if behaviour == "echo-key":
                    return self._send(500, {"error": f"bad key {self.headers.get('Authorization')}"})
                if behaviour == "401":
                    return self._send(401, {"error": f"invalid key {self.headers.get('Authorization')}"})
                if behaviour == "malformed":
                    return self._send(200, b'{"choices": [ {"message": ')
                if behaviour == "no-choices":
                    return self._send(200, {"object": "error"})
                time.sleep(fake.delay_s)
                user = body["messages"][-1]["content"]
                self._send(
                    200,
                    {
                        "id": "cmpl",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": f"echo:{user[:20]} Rating: [[7]]"},
                                "logprobs": {
                                    "content": [
                                        {
                                            "token": "M",
                                            "logprob": math.log(0.6),
                                            "top_logprobs": [
                                                {"token": "M", "logprob": math.log(0.6)},
                                                {"token": "m", "logprob": math.log(0.3)},
                                            ],
                                        }
                                    ]
                                },
                            }
                        ],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107},
                    },
                )
            finally:
                fake.done()

    return Handler


@pytest.fixture(scope="module")
def server():
    fake = FakeOpenAI()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield fake
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fake(server, monkeypatch):
    server.reset()
    monkeypatch.setenv(KEY_ENV, SECRET)
    return server


def make_client(fake, tmp_path=None, **overrides):
    sleeps = []
    kwargs = dict(
        base_url=fake.base_url,
        model="judge-1",
        api_key_env=KEY_ENV,
        timeout_s=5.0,
        max_retries=4,
        initial_backoff_s=0.1,
        backoff_multiplier=2.0,
        max_backoff_s=2.0,
        jitter=0.0,
        sleep=sleeps.append,
        seed=0,
        cache_dir=None if tmp_path is None else tmp_path / "cache",
    )
    kwargs.update(overrides)
    return judge_http.OpenAIChatClient(**kwargs), sleeps


MESSAGES = [{"role": "system", "content": "be fair"}, {"role": "user", "content": "Which is better?"}]


def test_completion_usage_and_cost(fake):
    client, _ = make_client(fake, usd_per_million_prompt_tokens=10.0, usd_per_million_completion_tokens=30.0)
    out = client.complete(MESSAGES, temperature=0, max_tokens=5)
    assert out.text.startswith("echo:Which is better?") and not out.cached
    assert out.top_logprobs[0][1] == {"token": "m", "logprob": pytest.approx(math.log(0.3))}
    request = fake.requests[0]
    assert request["authorization"] == f"Bearer {SECRET}"
    assert request["body"] == {"model": "judge-1", "messages": MESSAGES, "temperature": 0, "max_tokens": 5}
    client.complete(MESSAGES, temperature=0, max_tokens=6)
    assert (client.usage.requests, client.usage.prompt_tokens, client.usage.completion_tokens) == (2, 200, 14)
    assert client.usage.cost_usd == pytest.approx((200 * 10 + 14 * 30) / 1e6)


def test_retries_with_exponential_backoff(fake):
    client, sleeps = make_client(fake)
    fake.script = ["500", "malformed", "no-choices", "500"]
    out = client.complete(MESSAGES)
    assert out.text.startswith("echo:")
    assert len(fake.requests) == 5 and client.usage.attempts == 5 and client.usage.retries == 4
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8])  # jitter 0: initial * 2**i
    assert client.usage.requests == 1  # usage counts only the successful response


def test_backoff_bounds_with_jitter_and_cap(fake):
    client, _ = make_client(fake, jitter=0.5, initial_backoff_s=1.0, max_backoff_s=5.0)
    for attempt in range(8):
        nominal = min(5.0, 2.0**attempt)
        for _ in range(20):
            delay = client.backoff_delay(attempt)
            assert 0.5 * nominal <= delay <= nominal
    assert client.backoff_delay(0, retry_after=3.0) == 3.0  # Retry-After raises the delay
    assert client.backoff_delay(0, retry_after=60.0) == 5.0  # but never past the cap


def test_429_honours_retry_after(fake):
    client, sleeps = make_client(fake, max_backoff_s=10.0)
    fake.script = ["429"]
    client.complete(MESSAGES)
    assert sleeps == [3.0] and len(fake.requests) == 2
    capped, capped_sleeps = make_client(fake, max_backoff_s=1.5)
    fake.script = ["429"]
    capped.complete(MESSAGES)
    assert capped_sleeps == [1.5]


def test_timeout_is_retried(fake):
    client, sleeps = make_client(fake, timeout_s=0.2)
    fake.script = ["timeout"]
    out = client.complete(MESSAGES)
    assert out.text.startswith("echo:") and len(sleeps) == 1 and client.usage.attempts == 2


def test_gives_up_after_max_retries(fake):
    client, sleeps = make_client(fake, max_retries=2)
    fake.script = ["500"] * 10
    with pytest.raises(judge_http.JudgeHTTPError, match="giving up after 3 attempts") as info:
        client.complete(MESSAGES)
    assert info.value.status == 500 and info.value.attempts == 3
    assert len(fake.requests) == 3 and len(sleeps) == 2


def test_non_retryable_status_fails_at_once_without_leaking_key(fake):
    client, sleeps = make_client(fake)
    fake.script = ["401"]
    with pytest.raises(judge_http.JudgeHTTPError, match="HTTP 401") as info:
        client.complete(MESSAGES)
    assert len(fake.requests) == 1 and sleeps == []
    assert SECRET not in str(info.value) and "***" in str(info.value)


def test_key_never_in_errors_repr_or_cache(fake, tmp_path):
    client, _ = make_client(fake, tmp_path, max_retries=1)
    fake.script = ["echo-key", "echo-key"]
    with pytest.raises(judge_http.JudgeHTTPError) as info:
        client.complete(MESSAGES)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in repr(client) and SECRET not in str(vars(client))
    client.complete(MESSAGES)
    files = list((tmp_path / "cache").rglob("*"))
    assert any(f.is_file() for f in files)
    for f in files:
        if f.is_file():
            assert SECRET not in f.read_text()


def test_missing_key_is_a_clear_error(fake, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    client, _ = make_client(fake)
    with pytest.raises(judge_http.JudgeHTTPError, match=KEY_ENV):
        client.complete(MESSAGES)
    assert fake.requests == []


def test_cache_hit_makes_no_request(fake, tmp_path):
    client, _ = make_client(fake, tmp_path)
    first = client.complete(MESSAGES, temperature=0)
    assert len(fake.requests) == 1
    second = client.complete(MESSAGES, temperature=0)
    assert len(fake.requests) == 1 and second.cached and second.text == first.text
    assert client.usage.cache_hits == 1 and client.usage.prompt_tokens == 100
    client.complete(MESSAGES, temperature=1)  # other params -> other key
    other_model, _ = make_client(fake, tmp_path, model="judge-2")
    other_model.complete(MESSAGES, temperature=0)
    assert len(fake.requests) == 3
    # A fresh client over the same folder also hits (the cache is on disk, not in memory).
    fresh, _ = make_client(fake, tmp_path)
    assert fresh.complete(MESSAGES, temperature=0).cached and len(fake.requests) == 3
    stored = json.loads(
        next((tmp_path / "cache").rglob(f"{client.cache_key(MESSAGES, {'temperature': 0})}.json")).read_text()
    )
    assert stored["request"]["model"] == "judge-1" and stored["response"]["choices"]


def test_concurrency_limit(fake):
    fake.delay_s = 0.15
    client, _ = make_client(fake, max_concurrency=3)
    batch = [[{"role": "user", "content": f"question {i}"}] for i in range(12)]
    outs = client.complete_many(batch)
    assert [o.text[:15] for o in outs] == [f"echo:question {i}"[:15] for i in range(12)]
    assert len(fake.requests) == 12
    assert fake.max_in_flight == 3  # limited, and the pool did run requests in parallel


def test_alpaca_eval_judge_over_http(fake):
    client, _ = make_client(fake)
    judge = base.AlpacaEvalJudge(client)
    verdict = judge.judge_pair(instruction="Say hi", output_1="hi", output_2="hello!")
    assert verdict.preference == pytest.approx(2 - 0.3 / 0.9) and verdict.parsed
    body = fake.requests[0]["body"]
    assert (body["max_tokens"], body["logprobs"], body["top_logprobs"]) == (1, True, 5)
    assert body["messages"] == prompts.alpaca_eval_messages(instruction="Say hi", output_1="hi", output_2="hello!")
    single = base.MTBenchSingleJudge(client).judge_single(instruction="Q", output="A")
    assert single.score == 7.0


# ------------------------------------------------------------------------------- local judge
class ByteTokenizer:
    """A stand-in tokenizer: UTF-8 bytes are token ids (vocab 256), a plain chat layout."""

    def encode(self, text, add_special_tokens=True):
        return list(text.encode("utf-8"))

    def apply_chat_template(self, messages, add_generation_prompt=False):
        text = "".join(f"<{m['role']}>\n{m['content']}\n" for m in messages)
        return self.encode(text + ("<assistant>\n" if add_generation_prompt else ""))


@pytest.fixture(scope="module")
def tiny_model():
    llama = pytest.importorskip("alignax.models.llama", reason="alignax.models.llama not available yet")
    from flax import nnx

    from alignax.models.config import LlamaConfig

    return llama.Llama(LlamaConfig.tiny(max_position_embeddings=4096), rngs=nnx.Rngs(0))


def test_local_judge_reads_verdict_token_probabilities(tiny_model):
    import jax.numpy as jnp

    from alignax.evaluate.judges import local

    tokenizer = ByteTokenizer()
    judge = local.LocalModelJudge(tiny_model, tokenizer)
    verdict = judge.judge_pair(instruction="Name a colour.", output_1="Blue.", output_2="Red, a warm colour.")
    # Independent computation: float64 softmax of the model's last-position logits.
    messages = prompts.alpaca_eval_messages(
        instruction="Name a colour.", output_1="Blue.", output_2="Red, a warm colour."
    )
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    logits = np.asarray(tiny_model(jnp.asarray(ids, jnp.int32)[None]), np.float64)[0, -1]
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    p_m, p_big_m = probs[ord("m")], probs[ord("M")]
    assert verdict.raw["m"] == pytest.approx(p_m, rel=1e-5)
    assert verdict.raw["M"] == pytest.approx(p_big_m, rel=1e-5)
    assert verdict.preference == pytest.approx(2 - p_m / (p_m + p_big_m), rel=1e-5)
    assert 1.0 <= verdict.preference <= 2.0


def test_local_judge_rejects_multi_token_verdicts(tiny_model):
    from alignax.evaluate.judges import local

    with pytest.raises(ValueError, match="not one"):
        local.LocalModelJudge(tiny_model, ByteTokenizer(), verdicts=("A", "Bee"))
    judge = local.LocalModelJudge(tiny_model, ByteTokenizer(), max_prompt_tokens=50)
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        judge.judge_pair(instruction="x", output_1="y", output_2="z")
