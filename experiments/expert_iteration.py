"""expert_iteration: `python -m experiments.expert_iteration --config configs/expert_iteration.py:cpu --workdir runs/expert_iteration` (see configs/expert_iteration.py)."""

from experiments._main import run

if __name__ == "__main__":
    from alignax.iterate.loop import main

    run("configs/expert_iteration.py:cpu", main_fn=main)
