"""`python -m alignax.evaluate run`: each benchmark end to end with a tiny random model as policy and
local judge, official formats read back by their readers (alpaca-eval's own for AlpacaEval), the
existing metric code fed, an HTTP judge with scripted verdicts, and kill -9 + rerun losing and
duplicating nothing."""

import gzip
import http.server
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from alignax.evaluate import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
GEN = ["--max-new-tokens", "12", "--judge-max-tokens", "8", "--batch-size", "4"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random Llama with SmolLM2's tokenizer, saved as an HF folder."""
    from flax import nnx

    from alignax.models import save_hf
    from alignax.models.config import LlamaConfig
    from alignax.models.llama import Llama
    from alignax.train.modeling import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    cfg = LlamaConfig.tiny(
        vocab_size=tokenizer.vocab_size,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=4096,
    )
    folder = tmp_path_factory.mktemp("model") / "tiny-policy"
    save_hf(Llama(cfg, rngs=nnx.Rngs(0)), tokenizer, str(folder))
    return folder


def run_cli(args):
    return cli.main(["run", *map(str, args)])


def read_jsonl(path):
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]


def local_run(benchmark, model, workdir, evaldata, limit, *extra):
    return run_cli(
        [
            "--benchmark",
            benchmark,
            "--model",
            model,
            "--judge",
            f"local:{model}",
            "--limit",
            limit,
            "--workdir",
            workdir,
            "--evaldata",
            evaldata,
            *GEN,
            *extra,
        ]
    )


# ------------------------------------------------------------------------------------------ AlpacaEval
@pytest.fixture(scope="module")
def alpaca_run(tiny_model, evaldata_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("alpaca")
    gamed = evaldata_dir / "alpaca_eval" / "PROXY_not_published" / "df_gamed_PROXY.csv"
    code = local_run("alpaca_eval", tiny_model, workdir, evaldata_dir, 6, "--df-gamed", gamed)
    return code, workdir, gamed


def test_alpaca_eval_end_to_end_report(alpaca_run):
    code, workdir, _ = alpaca_run
    assert code == 0
    report = (workdir / "report.md").read_text()
    assert "LC win rate" in report and "Subset: 6 of the benchmark's 805 prompts" in report
    assert (workdir / "report.png").stat().st_size > 1000
    assert (workdir / "leaderboard" / "winrates.png").exists()
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["n_items"] == 6 and metrics["details"]["metrics"]["n_total"] == 6


def test_alpaca_eval_model_outputs_load_with_the_alpaca_eval_reader(alpaca_run, evaldata_dir):
    from alpaca_eval import utils

    _, workdir, _ = alpaca_run
    df = utils.load_or_convert_to_dataframe(str(workdir / "model_outputs.json"))
    assert len(df) == 6
    assert {"instruction", "output", "generator", "dataset"} <= set(df.columns)
    assert utils.get_generator_name(None, df) == "tiny-policy"
    with gzip.open(
        evaldata_dir / "alpaca_eval/results/gpt4_1106_preview/weighted_alpaca_eval_gpt4_turbo/annotations.json.gz", "rt"
    ) as f:
        eval_set = [r["instruction"] for r in json.load(f)]
    assert set(df["instruction"]) <= set(eval_set)
    positions = [eval_set.index(i) for i in df["instruction"]]
    assert positions == sorted(positions)  # evaluation-set order


def test_alpaca_eval_annotations_feed_the_lc_metric(alpaca_run, evaldata_dir):
    from alignax.evaluate import alpaca_eval as metric

    _, workdir, gamed = alpaca_run
    annotations = metric.load_annotations(workdir / "annotations.json")
    assert set(annotations["generator_1"]) == {"gpt4_1106_preview"}
    assert set(annotations["generator_2"]) == {"tiny-policy"}
    prefs = annotations["preference"].astype(float)
    assert ((prefs >= 1) & (prefs <= 2)).all()
    with gzip.open(
        evaldata_dir / "alpaca_eval/results/gpt4_1106_preview/weighted_alpaca_eval_gpt4_turbo/annotations.json.gz", "rt"
    ) as f:
        instructions = [r["instruction"] for r in json.load(f)]
    lc = metric.length_controlled_winrate(annotations, gamed, eval_instructions=instructions)
    assert 0 < lc["length_controlled_winrate"] < 100
    reported = json.loads((workdir / "metrics.json").read_text())["details"]["metrics"]
    assert reported["length_controlled_winrate"] == pytest.approx(lc["length_controlled_winrate"])


def test_bucketed_local_judge_equals_the_eager_local_judge(tiny_model):
    """The padded, jitted, last-position forward gives the verdict distribution of LocalModelJudge's
    eager forward on the exact prompt (padding is masked; positions restart in the real segment)."""
    import numpy as np

    from alignax.evaluate.judges.local import LocalModelJudge
    from alignax.evaluate.run.judging import BucketedLocalJudge
    from alignax.models import load

    model, tokenizer = load(str(tiny_model))
    eager, bucketed = LocalModelJudge(model, tokenizer), BucketedLocalJudge(model, tokenizer)
    pairs = [("Name a colour.", "Blue.", "Red is a colour, and so is green."), ("2+2?", "4", "four, obviously")]
    for instruction, first, second in pairs:
        messages = [{"role": "user", "content": f"{instruction}\n(1) {first}\n(2) {second}"}]
        assert len(eager.prompt_ids(messages)) not in (16, 32, 64, 128)  # the bucketed side really pads
        want, got = eager.next_token_probs(messages), bucketed.next_token_probs(messages)
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-7)
        a = eager.judge_pair(instruction=instruction, output_1=first, output_2=second)
        b = bucketed.judge_pair(instruction=instruction, output_1=first, output_2=second)
        assert b.preference == pytest.approx(a.preference, abs=1e-4)


def test_alpaca_eval_output_order_switch_is_alpaca_evals():
    from alpaca_eval import utils

    from alignax.evaluate.run.benchmarks.alpaca_eval import is_switched

    for text in ("How do I make escargot?", "Write a poem.", "x", "What is 2+2?", "Hola"):
        expected = utils.random_seeded_choice(seed="is_switched_outputs" + text + "123", choices=[False, True])
        assert is_switched(text) == expected


# ------------------------------------------------------------------------------------- Arena-Hard, MT-Bench
def test_arena_hard_end_to_end(tiny_model, evaldata_dir, tmp_path):
    assert local_run("arena_hard", tiny_model, tmp_path, evaldata_dir, 2) == 0
    answers = read_jsonl(tmp_path / "model_answer" / "tiny-policy.jsonl")
    assert len(answers) == 2
    for a in answers:
        assert {"uid", "ans_id", "model", "messages", "tstamp", "metadata"} <= set(a)
        assert a["model"] == "tiny-policy" and isinstance(a["messages"][-1]["content"]["answer"], str)
        assert a["metadata"]["token_len"] >= 1
    judgments = read_jsonl(tmp_path / "model_judgment" / "tiny-policy" / "tiny-policy.jsonl")
    assert [len(j["games"]) for j in judgments] == [2, 2]
    # Game 1 shows the baseline as A, game 2 the model as A.
    first = judgments[0]["games"]
    answer = answers[0]["messages"][-1]["content"]["answer"]
    assert first[0]["user_prompt"].index("Assistant A") < first[0]["user_prompt"].index(answer)
    assert first[1]["user_prompt"].index(answer) < first[1]["user_prompt"].index("Assistant B")
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.png").exists()
    # The random tiny judge writes no [[A>B]] label: every game's verdict is forced, and counted.
    games = [g for j in judgments for g in j["games"]]
    forced = [g for g in games if g["verdict_forced"]]
    assert forced and all(g["score"] in ("A>>B", "A>B", "A=B", "B>A", "B>>A") for g in forced)
    assert all(set(g["forced_logprobs"]) == {"A>>B", "A>B", "A=B", "B>A", "B>>A"} for g in forced)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["details"]["n_forced"] == len(forced)
    assert f"{len(forced)} of 4 verdicts forced from the judge's log-probabilities" in metrics["deviations"][0]
    assert "deviation: " + metrics["deviations"][0] in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("outcomes", [["model_b"] * 6, ["model_b"] * 5 + ["model_a", "tie"] * 3])
def test_arena_hard_score_is_bt_or_empirical_when_one_sided(tmp_path, outcomes):
    import pandas as pd

    from alignax.evaluate import arena_hard as metric
    from alignax.evaluate.run.benchmarks.arena_hard import _bt_score
    from alignax.evaluate.run.context import RunContext

    ctx = RunContext(benchmark="arena_hard", model_source="m", workdir=tmp_path, evaldata=tmp_path, num_rounds=20)
    battles = pd.DataFrame({"model_a": "gpt-4-0314", "model_b": "m", "winner": outcomes})
    notes = []
    score = _bt_score(ctx, battles, {}, notes)
    empirical = metric.weighted_empirical_win_rate(battles, baseline="gpt-4-0314")["m"]
    assert score.value == pytest.approx(empirical, abs=1e-3)
    assert score.lower <= score.value <= score.upper
    assert bool(notes) == (len(set(outcomes)) == 1)


def test_mt_bench_end_to_end_two_turns(tiny_model, evaldata_dir, tmp_path):
    assert local_run("mt_bench", tiny_model, tmp_path, evaldata_dir, 2) == 0
    answers = read_jsonl(tmp_path / "model_answer" / "tiny-policy.jsonl")
    assert [a["question_id"] for a in answers] == [81, 82]
    for a in answers:
        assert {"question_id", "answer_id", "model_id", "choices", "tstamp"} <= set(a)
        assert len(a["choices"][0]["turns"]) == 2
    generations = {r["id"]: r for r in read_jsonl(tmp_path / "generations" / "answers.jsonl")}
    second = generations["81:2"]["prompt"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == answers[0]["choices"][0]["turns"][0]
    judgments = read_jsonl(tmp_path / "model_judgment" / "tiny-policy_single.jsonl")
    assert sorted((j["question_id"], j["turn"]) for j in judgments) == [(81, 1), (81, 2), (82, 1), (82, 2)]
    assert {j["judge"][1] for j in judgments} == {"single-v1", "single-v1-multi-turn"}
    assert "MT-Bench score" in (tmp_path / "report.md").read_text()
    # No [[N]] from the random tiny judge: forced ratings make the score a number, counted.
    forced = [j for j in judgments if j["verdict_forced"]]
    assert forced and all(j["score"] in range(1, 11) for j in forced)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["metrics"][0]["value"] == metrics["metrics"][0]["value"]  # not NaN
    assert f"{len(forced)} of 4 verdicts forced" in (tmp_path / "report.md").read_text()


def test_no_force_verdict_leaves_unparsable_judgments(tiny_model, evaldata_dir, tmp_path):
    assert local_run("mt_bench", tiny_model, tmp_path, evaldata_dir, 1, "--no-force-verdict") == 0
    judgments = read_jsonl(tmp_path / "model_judgment" / "tiny-policy_single.jsonl")
    assert not any(j["verdict_forced"] for j in judgments)
    assert "verdicts forced" not in (tmp_path / "report.md").read_text()


def test_mt_bench_reference_answers_go_to_math_prompts(tiny_model, evaldata_dir, tmp_path):
    from alignax.evaluate.run.benchmarks import mt_bench
    from alignax.evaluate.run.context import RunContext

    ctx = RunContext(benchmark="mt_bench", model_source=str(tiny_model), workdir=tmp_path, evaldata=evaldata_dir)
    questions = mt_bench.questions(ctx)
    answers = [{"question_id": q["question_id"], "choices": [{"turns": ["a1", "a2"]}]} for q in questions]
    (tmp_path / "model_answer").mkdir()
    (tmp_path / "model_answer" / "tiny-policy.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    items = {i["id"]: i for i in mt_bench.judge_items(ctx)}
    refs = mt_bench.references(ctx)
    math_q = next(q for q in questions if q["category"] == "math")
    item = items[f"{math_q['question_id']}:2"]
    assert item["prompt"] == "single-math-v1-multi-turn"
    assert item["fields"]["ref_answer_2"] == refs[math_q["question_id"]][1]
    assert items[f"{questions[0]['question_id']}:1"]["prompt"] == "single-v1"


# -------------------------------------------------------------------------------------------- IFEval
def test_ifeval_accuracies(tiny_model, evaldata_dir, tmp_path):
    from alignax.evaluate import ifeval

    code = run_cli(
        [
            "--benchmark",
            "ifeval",
            "--model",
            tiny_model,
            "--limit",
            5,
            "--workdir",
            tmp_path,
            "--evaldata",
            evaldata_dir,
            "--max-new-tokens",
            12,
            "--batch-size",
            5,
        ]
    )
    assert code == 0
    rows = read_jsonl(tmp_path / "input_response_data.jsonl")
    prompts = ifeval.make_prompts(5, seed=0)
    assert [r["prompt"] for r in rows] == [p["prompt"] for p in prompts]
    expected = ifeval.score([{**p, "response": r["response"]} for p, r in zip(prompts, rows)])
    metrics = {m["name"]: m for m in json.loads((tmp_path / "metrics.json").read_text())["metrics"]}
    assert set(metrics) == {
        f"{level}-level {mode} accuracy (%)" for level in ("prompt", "instruction") for mode in ("strict", "loose")
    }
    assert metrics["instruction-level loose accuracy (%)"]["value"] == pytest.approx(
        100 * expected["inst_level_loose_acc"]
    )
    assert metrics["prompt-level strict accuracy (%)"]["value"] == pytest.approx(
        100 * expected["prompt_level_strict_acc"]
    )
    assert "not the benchmark's number" in (tmp_path / "report.md").read_text()


# ------------------------------------------------------------------------------ HTTP judge (scripted)
class ScriptedJudge(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible judge with fixed rules: AlpacaEval logprobs favour "M" (output_2),
    Arena-Hard prefers the shorter answer strongly, MT-Bench rates 7."""

    requests = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests += 1
        text, logprobs = self.verdict(body)
        payload = {
            "id": "x",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": logprobs,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    @staticmethod
    def verdict(body):
        user = body["messages"][-1]["content"]
        if body.get("logprobs"):
            top = [{"token": "M", "logprob": -0.2231}, {"token": "m", "logprob": -1.6094}]  # P(M)=0.8, P(m)=0.2
            return "M", {"content": [{"token": "M", "logprob": -0.2231, "top_logprobs": top}]}
        match = re.search(
            r"Assistant A's Answer\|>\n(.*)\n<\|The End of Assistant A's Answer.*"
            r"Assistant B's Answer\|>\n(.*)\n<\|The End of Assistant B",
            user,
            re.DOTALL,
        )
        if match:
            return ("[[A>>B]]" if len(match.group(1)) < len(match.group(2)) else "[[B>>A]]"), None
        return "The answer is fine. Rating: [[7]]", None

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def judge_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ScriptedJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def http_run(benchmark, model, workdir, evaldata, url, limit):
    return run_cli(
        [
            "--benchmark",
            benchmark,
            "--model",
            model,
            "--judge",
            f"http:{url},model=scripted,concurrency=4",
            "--limit",
            limit,
            "--workdir",
            workdir,
            "--evaldata",
            evaldata,
            *GEN,
        ]
    )


def test_http_judge_scores_through_the_metric_code(tiny_model, evaldata_dir, tmp_path, judge_server):
    results = {}
    for benchmark in ("alpaca_eval", "arena_hard", "mt_bench"):
        assert http_run(benchmark, tiny_model, tmp_path / benchmark, evaldata_dir, judge_server, 3) == 0
        results[benchmark] = json.loads((tmp_path / benchmark / "metrics.json").read_text())
    # AlpacaEval: P(M) = 0.8 with M the second output; switched rows map back with 3 - x.
    annotations = json.loads((tmp_path / "alpaca_eval" / "annotations.json").read_text())
    for a in annotations:
        assert a["preference"] == pytest.approx(1.2 if a["is_switched_outputs"] else 1.8, abs=1e-3)
    # Arena-Hard: the tiny model's 12-token answers are shorter than gpt-4-0314's: it wins both games.
    arena = results["arena_hard"]["metrics"][0]
    assert arena["value"] > 90 and results["arena_hard"]["details"]["n_unparsable"] == 0
    # MT-Bench: every (question, turn) rated 7.
    mt = {m["name"]: m["value"] for m in results["mt_bench"]["metrics"]}
    assert mt["MT-Bench score (1-10)"] == pytest.approx(7.0) and mt["turn 2"] == pytest.approx(7.0)
    # An HTTP judge is never forced (its verdicts are parsed from text only).
    assert results["mt_bench"]["deviations"] == [] and results["arena_hard"]["deviations"] == []
    mt_rows = read_jsonl(tmp_path / "mt_bench" / "model_judgment" / "scripted_single.jsonl")
    assert not any(r["verdict_forced"] for r in mt_rows)
    # A rerun makes no request: judgments resume from the workdir (and the HTTP cache).
    before = ScriptedJudge.requests
    assert http_run("mt_bench", tiny_model, tmp_path / "mt_bench", evaldata_dir, judge_server, 3) == 0
    assert ScriptedJudge.requests == before
    assert len(read_jsonl(tmp_path / "mt_bench" / "model_judgment" / "scripted_single.jsonl")) == 6


# ---------------------------------------------------------------------------------------- errors
def test_errors_name_the_problem_and_exit_2(tiny_model, evaldata_dir, tmp_path, capsys):
    assert run_cli(["--benchmark", "mt_bench", "--model", tiny_model, "--judge", "gpt4", "--workdir", tmp_path]) == 2
    assert "--judge 'gpt4'" in capsys.readouterr().err
    assert run_cli(["--benchmark", "mt_bench", "--model", tiny_model, "--workdir", tmp_path]) == 2
    assert "needs --judge" in capsys.readouterr().err
    bad = tmp_path / "evaldata" / "mt_bench" / "fastchat" / "llm_judge" / "data" / "mt_bench"
    bad.mkdir(parents=True)
    (bad / "question.jsonl").write_text('{"question_id": 1, "category": "math", "turns": ["a", "b"]}\n{"oops"\n')
    args = [
        "--benchmark",
        "mt_bench",
        "--model",
        tiny_model,
        "--judge",
        f"local:{tiny_model}",
        "--workdir",
        tmp_path / "w",
        "--evaldata",
        tmp_path / "evaldata",
    ]
    assert run_cli(args) == 2
    assert f"{bad / 'question.jsonl'}:2: invalid JSON" in capsys.readouterr().err
    # The same workdir with another model is refused, naming run.json.
    assert run_cli(args[:3] + ["other-model"] + args[4:]) == 2
    err = capsys.readouterr().err
    assert "run.json" in err and "another run" in err


# ------------------------------------------------------------------------------------ kill and rerun
def count_lines(path):
    path = pathlib.Path(path)
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_when(command, path, *, timeout=600):
    """Starts `command`, SIGKILLs it once `path` has a complete line; returns the line count then."""
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and process.poll() is None:
            if count_lines(path) >= 1:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return count_lines(path)
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    raise AssertionError(f"{command} ended (exit {process.returncode}) before writing {path}")


def test_kill_mid_generation_and_mid_judging_then_rerun(tiny_model, evaldata_dir, tmp_path):
    n = 8
    command = [
        sys.executable,
        "-m",
        "alignax.evaluate",
        "run",
        "--benchmark",
        "alpaca_eval",
        "--model",
        str(tiny_model),
        "--judge",
        f"local:{tiny_model}",
        "--limit",
        str(n),
        "--workdir",
        str(tmp_path),
        "--evaldata",
        str(evaldata_dir),
        "--batch-size",
        "1",
        "--max-new-tokens",
        "48",
    ]
    answers = tmp_path / "generations" / "answers.jsonl"
    judgments = tmp_path / "judgments" / "alpaca_eval-tiny-policy.jsonl"
    at_kill = kill_when(command, answers)
    assert 1 <= at_kill < n, "killed mid-generation"
    kept = read_jsonl(answers)
    assert not judgments.exists()
    judged_at_kill = kill_when(command, judgments)
    assert 1 <= judged_at_kill < n, "killed mid-judging"
    assert count_lines(answers) == n
    judged = read_jsonl(judgments)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    final_answers, final_judgments = read_jsonl(answers), read_jsonl(judgments)
    assert sorted(r["id"] for r in final_answers) == sorted({r["id"] for r in final_answers})
    assert len(final_answers) == n and len(final_judgments) == n
    assert len({r["id"] for r in final_judgments}) == n
    assert final_answers[: len(kept)] == kept and final_judgments[: len(judged)] == judged  # nothing redone
    outputs = json.loads((tmp_path / "model_outputs.json").read_text())
    annotations = json.loads((tmp_path / "annotations.json").read_text())
    assert len(outputs) == n and len(annotations) == n
    assert [a["output_2"] for a in annotations] == [o["output"] for o in outputs]
    assert (tmp_path / "report.md").exists()


def test_kill_mid_mt_bench_judging_with_forced_verdicts_then_rerun(tiny_model, evaldata_dir, tmp_path):
    """Forcing happens inside a judged chunk: a kill between chunks loses and repeats nothing."""
    command = [sys.executable, "-m", "alignax.evaluate", "run", "--benchmark", "mt_bench", "--model"]
    command += [str(tiny_model), "--judge", f"local:{tiny_model}", "--limit", "2", "--workdir", str(tmp_path)]
    command += ["--evaldata", str(evaldata_dir), "--batch-size", "1", "--max-new-tokens", "8"]
    command += ["--judge-max-tokens", "4"]
    judgments = tmp_path / "judgments" / "mt_bench-tiny-policy.jsonl"
    judged_at_kill = kill_when(command, judgments)
    assert 1 <= judged_at_kill < 4, "killed mid-judging"
    judged = read_jsonl(judgments)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    final = read_jsonl(judgments)
    assert final[: len(judged)] == judged and len(final) == 4 and len({r["id"] for r in final}) == 4
    assert all("verdict_forced" in r for r in final)
    n_forced = sum(r["verdict_forced"] for r in final)
    assert json.loads((tmp_path / "metrics.json").read_text())["details"]["n_forced"] == n_forced
