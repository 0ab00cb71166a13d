"""Hardening of the judge HTTP client and the evaluation CLIs (issue "Hardening every boundary",
parts 1, 5 and 8).

Client cases run against real HTTP servers on 127.0.0.1 (http.server in threads): redirects must
not carry the key to another origin, no key over plain http off the machine, one total deadline
per request, a response-size cap, and a strict response schema whose failures are named errors
that leave nothing in the cache (alignax/evaluate/judges/http.py). CLI cases write real files to
tmp_path and run `alignax.evaluate.cli.main`: every bad file is an exit status 2 with a message
naming the file and row, never a traceback or a silently wrong score.
"""

import http.server
import json
import math
import socket
import threading
import time

import pytest

from alignax.evaluate.judges import http as judge_http

SECRET = "sk-hardening-SECRET-0123456789"
KEY_ENV = "ALIGNAX_TEST_HARDENING_KEY"
MESSAGES = [{"role": "user", "content": "Which output is better?"}]


def completion_body(**overrides):
    """A well-formed chat completion; `overrides` replace top-level fields or choices[0] fields."""
    choice = {
        "index": 0,
        "finish_reason": "stop",
        "message": {"role": "assistant", "content": "M"},
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
    body = {
        "id": "cmpl",
        "object": "chat.completion",
        "choices": [choice],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }
    for name, value in overrides.items():
        (choice if name in ("message", "logprobs") else body)[name] = value
    return json.dumps(body).encode()


class Server:
    """A real HTTP server in a thread; `respond(handler)` writes each response; requests are recorded."""

    def __init__(self, respond, host="127.0.0.1"):
        self.respond, self.requests = respond, []
        self.httpd = http.server.ThreadingHTTPServer((host, 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.requests.append(
                    {"method": self.command, "path": self.path, "authorization": self.headers.get("Authorization")}
                )
                try:
                    server.respond(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up (deadline or size cap): that is the point

            do_GET = do_POST = handle_any

        return Handler

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    servers = []

    def start(respond, host="127.0.0.1"):
        servers.append(Server(respond, host))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def send(handler, status=200, body=b"", headers=()):
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    if not any(name.lower() == "content-length" for name, _ in headers):
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def client_for(port, host="127.0.0.1", **overrides):
    kwargs = dict(
        base_url=f"http://{host}:{port}/v1",
        model="judge",
        api_key_env=KEY_ENV,
        timeout_s=5.0,
        max_retries=0,
        sleep=lambda seconds: None,
    )
    kwargs.update(overrides)
    return judge_http.OpenAIChatClient(**kwargs)


# ------------------------------------------------------------------------------- credentials
@pytest.mark.parametrize("status, target_host", [(302, "127.0.0.1"), (303, "localhost"), (307, "127.0.0.1")])
def test_redirect_to_another_origin_never_carries_the_key(serve, status, target_host):
    """urllib turned a 302/303 into a GET to the new host with the Authorization header kept."""
    elsewhere = serve(lambda h: send(h, 200, completion_body()))
    location = f"http://{target_host}:{elsewhere.port}/v1/chat/completions"
    origin = serve(lambda h: send(h, status, b"", headers=[("Location", location)]))
    client = client_for(origin.port)
    with pytest.raises(judge_http.JudgeHTTPError, match="redirect") as info:
        client.complete(MESSAGES)
    assert elsewhere.requests == []
    assert [r["authorization"] for r in origin.requests] == [f"Bearer {SECRET}"]
    assert info.value.status == status and SECRET not in str(info.value)


def non_loopback_address():
    """This machine's address on its default route, or a TEST-NET-2 address when it has none."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("198.51.100.1", 9))  # UDP connect sends nothing; it only picks a route
        address = probe.getsockname()[0]
    except OSError:
        address = "198.51.100.7"
    finally:
        probe.close()
    return "198.51.100.7" if address.startswith("127.") else address


def test_plain_http_key_to_non_loopback_host_is_refused(serve):
    listener = serve(lambda h: send(h, 200, completion_body()), host="0.0.0.0")
    address = non_loopback_address()
    with pytest.raises(judge_http.InsecureEndpointError, match="plain http"):
        client = client_for(listener.port, host=address)
        client.complete(MESSAGES)
    assert listener.requests == []
    # https to the same host, and plain http to loopback hosts, are accepted.
    client_for(listener.port, host=address, base_url=f"https://{address}:{listener.port}/v1")
    for host in ("127.0.0.1", "localhost", "[::1]", "127.8.9.10"):
        client_for(listener.port, host=host)


def test_key_with_a_newline_is_refused_without_quoting_it(serve, monkeypatch):
    server = serve(lambda h: send(h, 200, completion_body()))
    monkeypatch.setenv(KEY_ENV, SECRET + "\r\nX-Injected: 1")
    with pytest.raises(judge_http.JudgeHTTPError, match=KEY_ENV) as info:
        client_for(server.port).complete(MESSAGES)
    assert SECRET not in str(info.value) and server.requests == []


# ------------------------------------------------------------------------------- deadline and size
def drip(handler, *, in_headers):
    """Sends one byte every 50 ms for up to 20 s, in the header block or in the body."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    if not in_headers:
        handler.wfile.write(b"Content-Type: application/json\r\nContent-Length: 400\r\n\r\n")
    handler.wfile.flush()
    for _ in range(400):
        handler.wfile.write(b"X" if in_headers else b" ")
        handler.wfile.flush()
        time.sleep(0.05)


@pytest.mark.parametrize("in_headers", [False, True], ids=["drip-body", "drip-headers"])
def test_drip_fed_response_hits_one_total_deadline(serve, in_headers):
    """A per-read timeout restarts on every byte; the deadline must cover the whole request."""
    server = serve(lambda h: drip(h, in_headers=in_headers))
    client = client_for(server.port, timeout_s=1.0)
    start = time.monotonic()
    with pytest.raises(judge_http.JudgeTimeoutError, match="deadline"):
        client.complete(MESSAGES)
    assert time.monotonic() - start < 3.0
    assert len(server.requests) == 1


def endless(handler, *, declared):
    """A 200 whose body never ends (stops at 64 MiB so that old code fails instead of hanging)."""
    handler.send_response(200)
    if declared:
        handler.send_header("Content-Length", str(10**12))
    handler.end_headers()
    handler.wfile.write(b'{"choices": [')
    chunk = b" " * 65536
    for _ in range(1024):
        handler.wfile.write(chunk)


@pytest.mark.parametrize("declared", [False, True], ids=["until-close", "declared-length"])
def test_endless_body_hits_the_size_cap(serve, declared):
    server = serve(lambda h: endless(h, declared=declared))
    client = client_for(server.port, max_response_bytes=2**20, max_retries=3)
    with pytest.raises(judge_http.ResponseTooLargeError, match="max_response_bytes"):
        client.complete(MESSAGES)
    assert len(server.requests) == 1  # not retried: the next body would be as large


# ------------------------------------------------------------------------------- response schema
MALFORMED = {
    "logprob-string": completion_body(
        logprobs={"content": [{"token": "M", "logprob": -0.1, "top_logprobs": [{"token": "M", "logprob": "high"}]}]}
    ),
    "logprob-positive": completion_body(
        logprobs={"content": [{"token": "M", "logprob": -0.1, "top_logprobs": [{"token": "M", "logprob": 3.0}]}]}
    ),
    "logprob-overflow": completion_body(
        logprobs={"content": [{"token": "M", "logprob": -0.1, "top_logprobs": [{"token": "M", "logprob": -0.5}]}]}
    ).replace(b"-0.5", b"-1e999"),
    "logprobs-content-number": completion_body(logprobs={"content": 5}),
    "logprobs-string": completion_body(logprobs="abc"),
    "top-logprobs-string": completion_body(logprobs={"content": [{"token": "M", "top_logprobs": "Mm"}]}),
    "choices-string": completion_body(choices="abc"),
    "choices-empty": completion_body(choices=[]),
    "choice-number": completion_body(choices=[5]),
    "content-list": completion_body(message={"role": "assistant", "content": ["M"]}),
    "usage-string": completion_body(usage={"prompt_tokens": "many", "completion_tokens": 1}),
    "usage-overflow": completion_body(usage={"prompt_tokens": 1.5, "completion_tokens": 1}).replace(b"1.5", b"1e999"),
    "usage-negative": completion_body(usage={"prompt_tokens": -5, "completion_tokens": 1}),
    "usage-boolean": completion_body(usage={"prompt_tokens": True, "completion_tokens": 1}),
    "usage-list": completion_body(usage=[10, 1]),
    "nan-constant": completion_body().replace(b'"completion_tokens": 1', b'"completion_tokens": NaN'),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_response_is_a_named_error_and_never_cached(serve, tmp_path, name):
    state = {"body": MALFORMED[name]}
    server = serve(lambda h: send(h, 200, state["body"], headers=[("Content-Type", "application/json")]))
    client = client_for(server.port, cache_dir=tmp_path / "cache", max_retries=1)
    with pytest.raises(judge_http.MalformedResponseError) as info:
        client.complete(MESSAGES)
    assert len(server.requests) == 2  # retried once, as malformed bodies are
    assert SECRET not in str(info.value)
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    assert (client.usage.requests, client.usage.prompt_tokens) == (0, 0)
    # A rerun is not poisoned: the next, valid answer is fetched, used and cached.
    state["body"] = completion_body()
    out = client.complete(MESSAGES)
    assert out.text == "M" and out.top_logprobs[0][1]["token"] == "m" and not out.cached
    assert client.complete(MESSAGES).cached and len(server.requests) == 3


def test_malformed_cache_file_is_a_miss(serve, tmp_path):
    """A file cached by an older client without validation must not be replayed."""
    server = serve(lambda h: send(h, 200, completion_body()))
    client = client_for(server.port, cache_dir=tmp_path / "cache")
    path = tmp_path / "cache" / client.cache_key(MESSAGES, {})[:2] / f"{client.cache_key(MESSAGES, {})}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"request": {}, "response": {"choices": "abc"}}))
    out = client.complete(MESSAGES)
    assert out.text == "M" and not out.cached and len(server.requests) == 1
    assert json.loads(path.read_text())["response"]["choices"][0]["message"]["content"] == "M"


# ------------------------------------------------------------------------------- evaluation CLIs
def run_cli(argv, capsys):
    """(exit status, stderr) of `python -m alignax.evaluate ARGV`, run in-process."""
    from alignax.evaluate import cli

    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse rejects bad option values this way
        status = exit_.code
    return status, capsys.readouterr().err


def annotation(i, preference, generator_2="my-model"):
    return {
        "instruction": f"Instruction {i}",
        "output_1": "base " * (i + 1),
        "output_2": "model " * (2 * i + 1),
        "generator_1": "baseline",
        "generator_2": generator_2,
        "preference": preference,
    }


def write_json(path, value):
    path.write_text(json.dumps(value))
    return path


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_boolean_preference_is_rejected_not_scored_as_a_baseline_win(tmp_path, capsys):
    rows = [annotation(0, 2.0), annotation(1, True), annotation(2, 2.0), annotation(3, 1.0)]
    path = write_json(tmp_path / "annotations.json", rows)
    status, err = run_cli(["alpaca_eval", path], capsys)
    assert status == 2 and str(path) in err and "row 1" in err and "preference" in err and "True" in err


def test_file_mixing_several_generator_2_models_is_an_error(tmp_path, capsys):
    rows = [annotation(0, 2.0, "model-a"), annotation(1, 1.0, "model-b"), annotation(2, 2.0, "model-a")]
    path = write_json(tmp_path / "annotations.json", rows)
    status, err = run_cli(["alpaca_eval", path], capsys)
    assert status == 2 and str(path) in err and "generator_2" in err and "model-b" in err and "row 1" in err


def arena_judgments(tmp_path):
    rows = [
        {"question_id": f"q{i}", "model": "my-model", "games": [{"score": verdict}, {"score": "B>A"}]}
        for i, verdict in enumerate(["A>B", "B>A", "A>>B", "A=B", "B>>A", "B>A"])
    ]
    return write_jsonl(tmp_path / "judgments.jsonl", rows)


@pytest.mark.parametrize("weight", ["-1", "0"])
def test_arena_weight_below_one_is_rejected(tmp_path, capsys, weight):
    from alignax.evaluate import arena_hard

    path = arena_judgments(tmp_path)
    status, err = run_cli(
        ["arena_hard", "--judgments", path, "--baseline", "base", "--weight", weight, "--num-rounds", "3"], capsys
    )
    assert status == 2 and "--weight" in err and weight in err
    with pytest.raises(ValueError, match="weight must be an integer >= 1"):
        arena_hard.battles_from_judgments(arena_hard._read_jsonl(path), baseline="base", weight=int(weight))


@pytest.mark.parametrize("v2", [False, True])
def test_arena_zero_bootstrap_rounds_is_rejected(tmp_path, capsys, v2):
    from alignax.evaluate import arena_hard

    path = arena_judgments(tmp_path)
    argv = ["arena_hard", "--judgments", path, "--baseline", "base", "--num-rounds", "0"] + (["--v2"] if v2 else [])
    status, err = run_cli(argv, capsys)
    assert status == 2 and "--num-rounds" in err and "0" in err
    battles, _ = arena_hard.battles_from_judgments(arena_hard._read_jsonl(path), baseline="base")
    with pytest.raises(ValueError, match="num_rounds must be an integer >= 1"):
        arena_hard.leaderboard(battles, baseline="base", num_rounds=0)


def truncated_gzip(path):
    import gzip

    data = gzip.compress(json.dumps([{"score": "7", "model_output": "x"}] * 50).encode())
    path.write_bytes(data[: len(data) // 2])
    return path


# (benchmark argv before the file, file name, writer, text the message must hold besides the file)
BAD_FILES = {
    "alpaca-not-utf8": (
        ["alpaca_eval"],
        "a.json",
        lambda p: p.write_bytes(b'[{"preference": "\xff\xfe"}]'),
        "cannot read",
    ),
    "alpaca-output-not-string": (
        ["alpaca_eval"],
        "a.json",
        lambda p: write_json(p, [{**annotation(i, 2.0), "output_2": 12345} for i in range(3)]),
        "row 0",
    ),
    "alpaca-no-model-named": (
        ["alpaca_eval"],
        "a.json",
        lambda p: write_json(p, [annotation(0, 2.0, None), annotation(1, 1.0, None)]),
        "generator_2",
    ),
    "arena-line-not-object": (
        ["arena_hard", "--baseline", "base", "--num-rounds", "2", "--judgments"],
        "j.jsonl",
        lambda p: write_jsonl(p, [{"model": "m", "games": []}, "[1, 2]"]),
        ":2",
    ),
    "arena-games-not-list": (
        ["arena_hard", "--baseline", "base", "--num-rounds", "2", "--judgments"],
        "j.jsonl",
        lambda p: write_jsonl(p, [{"model": "m", "games": "A>B"}]),
        ":1",
    ),
    "arena-battle-model-list": (
        ["arena_hard", "--baseline", "base", "--num-rounds", "2"],
        "b.jsonl",
        lambda p: write_jsonl(p, [{"model_a": "base", "model_b": ["m"], "winner": "tie"}]),
        ":1",
    ),
    "mtbench-missing-turn": (
        ["mt_bench"],
        "j.jsonl",
        lambda p: write_jsonl(
            p, [{"model": "m", "question_id": 1, "turn": 1, "score": 7}, {"model": "m", "question_id": 2, "score": 7}]
        ),
        "judgment 1",
    ),
    "mtbench-score-text": (
        ["mt_bench"],
        "j.jsonl",
        lambda p: write_jsonl(p, [{"model": "m", "question_id": 1, "turn": 1, "score": "high"}]),
        "judgment 0",
    ),
    "mtbench-turn-boolean": (
        ["mt_bench"],
        "j.jsonl",
        lambda p: write_jsonl(p, [{"model": "m", "question_id": 1, "turn": True, "score": 7}]),
        "judgment 0",
    ),
    "wildbench-output-not-string": (
        ["wildbench", "score"],
        "r.json",
        lambda p: write_json(p, [{"session_id": "s0", "score": "7", "model_output": 5}]),
        "item 0",
    ),
    "wildbench-object-not-list": (
        ["wildbench", "score"],
        "r.json",
        lambda p: write_json(p, {"session_id": "s0", "score": "7", "model_output": "x"}),
        "list",
    ),
    "wildbench-score-boolean": (
        ["wildbench", "score"],
        "r.json",
        lambda p: write_json(p, [{"session_id": "s0", "score": True, "model_output": "x"}]),
        "item 0",
    ),
    "wildbench-extent-null": (
        ["wildbench", "reward", "--test-model", "T", "--ref-model", "R"],
        "r.json",
        lambda p: write_json(
            p, [{"session_id": "s0", "winner": "T", "extent": None, "model_outputs": {"T": "a", "R": "b"}}]
        ),
        "item 0",
    ),
    "wildbench-truncated-gzip": (["wildbench", "score"], "r.json.gz", truncated_gzip, "invalid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_an_error_naming_file_and_row(tmp_path, capsys, case):
    argv, name, write, marker = BAD_FILES[case]
    path = tmp_path / name
    write(path)
    status, err = run_cli([*argv, path], capsys)
    assert status == 2, err
    assert err.startswith("error: ") and str(path) in err and marker in err, err
    assert "Traceback" not in err


def test_module_entry_point_prints_no_traceback(tmp_path):
    import subprocess
    import sys

    path = write_jsonl(tmp_path / "j.jsonl", [{"model": "m", "question_id": 1, "score": 7}])
    result = subprocess.run(
        [sys.executable, "-m", "alignax.evaluate", "mt_bench", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and str(path) in result.stderr and "'turn'" in result.stderr
