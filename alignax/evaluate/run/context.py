"""What one `evaluate run` knows: the model, the judge, the subset, the work directory, loaded models.

The work directory keeps every stage's output, so a rerun resumes:

    run.json                      the run's settings (a rerun with another model/benchmark/judge is refused)
    generations/*.jsonl           sampler records (resumable, see generation.py)
    <official answer files>       model_outputs.json | model_answer/<name>.jsonl | input_response_data.jsonl
    judgments/*.jsonl             judge verdicts (resumable, see judging.py)
    <official judgment files>     annotations.json | model_judgment/<judge>/... | ...
    judge_cache/                  the HTTP judge's response cache
    metrics.json, report.md, report.png
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

from alignax import files
from alignax.evaluate.run.generation import GenerationSettings, generate_answers, with_overrides
from alignax.evaluate.run.judging import JudgeSpec, safe_name


def default_evaldata() -> pathlib.Path:
    """$ALIGNAX_EVALDATA, else the `shared/evaldata` folder next to the repository checkout."""
    if os.environ.get("ALIGNAX_EVALDATA"):
        return pathlib.Path(os.environ["ALIGNAX_EVALDATA"])
    return pathlib.Path(__file__).resolve().parents[4] / "shared" / "evaldata"


@dataclasses.dataclass
class RunContext:
    benchmark: str
    model_source: str
    workdir: pathlib.Path
    evaldata: pathlib.Path
    judge: JudgeSpec | None = None
    limit: int | None = None
    model_name: str = ""
    batch_size: int = 8
    max_new_tokens: int | None = None  # overrides the benchmark's setting (a named deviation)
    judge_max_tokens: int | None = None  # overrides the judge protocol's max_tokens (a named deviation)
    seed: int = 0
    num_rounds: int = 100  # bootstrap rounds of the confidence intervals
    df_gamed: str | None = None  # AlpacaEval's df_gamed.csv, for the length-controlled win rate
    force_verdict: bool = True  # local judges: force a missing verdict from log-probs (judging.py)
    _models: dict[str, tuple[Any, Any]] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.workdir = pathlib.Path(self.workdir)
        self.evaldata = pathlib.Path(self.evaldata)
        self.model_name = self.model_name or safe_name(self.model_source)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")

    def path(self, *parts: str) -> pathlib.Path:
        path = self.workdir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def directory(self, *parts: str) -> pathlib.Path:
        path = self.workdir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def data(self, *parts: str) -> pathlib.Path:
        path = self.evaldata.joinpath(*parts)
        if not path.exists():
            raise FileNotFoundError(f"{path}: benchmark data not found (set --evaldata or $ALIGNAX_EVALDATA)")
        return path

    def subset(self, items: list) -> list:
        return items if self.limit is None else items[: self.limit]

    def settings(self, settings: GenerationSettings) -> GenerationSettings:
        return with_overrides(settings, max_new_tokens=self.max_new_tokens)

    def judge_tokens(self, protocol_max_tokens: int) -> int:
        return self.judge_max_tokens if self.judge_max_tokens is not None else protocol_max_tokens

    def load(self, source: str) -> tuple[Any, Any]:
        """(model, tokenizer) of a preset / .gguf / HF folder, loaded once per run."""
        if source not in self._models:
            from alignax.models import load

            model, tokenizer = load(source)
            if tokenizer is None:
                raise ValueError(f"{source}: the model has no tokenizer (tokenizer.json / GGUF tokenizer metadata)")
            self._models[source] = (model, tokenizer)
        return self._models[source]

    def policy(self) -> tuple[Any, Any]:
        return self.load(self.model_source)

    def answer_user_turns(self, user_turns: dict[str, str], settings: GenerationSettings) -> dict[str, str]:
        """The policy's answers {id: text} to one user turn each, with the benchmark's `settings`
        (and this run's overrides), generated into generations/answers.jsonl (resumable)."""
        model, tokenizer = self.policy()
        records = [{"id": key, "prompt": [{"role": "user", "content": text}]} for key, text in user_turns.items()]
        return generate_answers(
            model,
            tokenizer,
            records,
            self.path("generations", "answers.jsonl"),
            self.settings(settings),
            batch_size=self.batch_size,
            seed=self.seed,
        )

    def identity(self) -> dict[str, Any]:
        """What must not change between a run and its resumption in the same workdir."""
        return {
            "benchmark": self.benchmark,
            "model": self.model_source,
            "model_name": self.model_name,
            "judge": dataclasses.asdict(self.judge) if self.judge else None,
            "max_new_tokens": self.max_new_tokens,
            "judge_max_tokens": self.judge_max_tokens,
            "seed": self.seed,
        }

    def claim_workdir(self) -> None:
        """Writes run.json, or checks that an existing one describes the same run."""
        path = self.path("run.json")
        mine = self.identity()
        if path.exists():
            with open(path, encoding="utf-8") as f:
                theirs = json.load(f)
            changed = sorted(k for k in mine if theirs.get(k) != mine[k])
            if changed:
                raise ValueError(
                    f"{path}: this work directory holds another run (different {', '.join(changed)}: "
                    f"{ {k: theirs.get(k) for k in changed} }); use a new --workdir"
                )
        files.write_atomic(path, json.dumps(mine, indent=2) + "\n")
