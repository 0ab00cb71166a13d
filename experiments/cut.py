"""cut: `python -m experiments.cut --config configs/cut.py:cpu --workdir runs/cut` (see configs/cut.py).

Held-out check of a trained model (docs/reproductions.md): do its answers to the held-out
judgment questions avoid the judged faults (a wrong answer; the filler sign-off)?

  python -m experiments.cut heldout runs/cut/export [OTHER_MODEL ...]

A model is an HF folder or a preset name; each answers every builtin:judgment/eval question
(greedy and 4 samples at temperature 1) through transformers with its chat template.
"""

import sys

from experiments._main import run

FILLER_MARK = "I hope this helps"


def heldout_questions() -> list[tuple[str, str]]:
    """(question, right answer) of builtin:judgment/eval: the right answer is the positive response,
    the start of the filler response, or quoted in a wrong answer's judgment."""
    from alignax.data.builtin import builtin_path
    from alignax.data.builtin.make_builtin import FILLER
    from alignax.files import read_jsonl_records

    out = []
    for _, record in read_jsonl_records(builtin_path("judgment/eval")):
        right = {"right": record["response"], "filler": record["response"].replace(f" {FILLER}", "")}.get(
            record["kind"], record["judgment"].split("The correct answer is: ", 1)[-1]
        )
        out.append((record["prompt"], right))
    return out


def _load(source: str):
    import os

    import torch
    import transformers

    from alignax.models import presets

    if presets.is_preset(source):
        path = presets.resolve(source)
        kwargs = dict(gguf_file=os.path.basename(path))
        source = os.path.dirname(path)
    else:
        kwargs = {}
    model = transformers.AutoModelForCausalLM.from_pretrained(source, torch_dtype=torch.float32, **kwargs).eval()
    return model, transformers.AutoTokenizer.from_pretrained(source, **kwargs)


def heldout_check(source: str, samples: int = 4, max_new_tokens: int = 40, seed: int = 0) -> dict:
    """Fault rates of `source` on the held-out questions: `wrong` (the answer does not start with the
    right one) and `filler` (the sign-off appears), greedy and sampled."""
    import torch

    model, tokenizer = _load(source)
    torch.manual_seed(seed)
    counts = {"greedy": {"n": 0, "wrong": 0, "filler": 0}, "sampled": {"n": 0, "wrong": 0, "filler": 0}}
    for question, right in heldout_questions():
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt"
        )
        for mode, kwargs in (
            ("greedy", dict(do_sample=False)),
            ("sampled", dict(do_sample=True, temperature=1.0, top_k=0, num_return_sequences=samples)),
        ):
            with torch.no_grad():
                out = model.generate(
                    prompt, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.eos_token_id, **kwargs
                )
            for row in out:
                text = tokenizer.decode(row[prompt.shape[1] :], skip_special_tokens=True).strip()
                counts[mode]["n"] += 1
                counts[mode]["wrong"] += int(not text.startswith(right.rstrip(".")))
                counts[mode]["filler"] += int(FILLER_MARK in text)
    return {
        mode: {"n": c["n"], "wrong_rate": c["wrong"] / c["n"], "filler_rate": c["filler"] / c["n"]}
        for mode, c in counts.items()
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "heldout":
        import json

        for source in sys.argv[2:]:
            print(json.dumps({"model": source, **heldout_check(source)}), flush=True)
    else:
        run("configs/cut.py:cpu")
