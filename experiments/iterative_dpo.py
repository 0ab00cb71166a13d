"""iterative_dpo: `python -m experiments.iterative_dpo --config configs/iterative_dpo.py:cpu --workdir runs/iterative_dpo` (see configs/iterative_dpo.py)."""

from experiments._main import run

if __name__ == "__main__":
    from alignax.iterate.loop import main

    run("configs/iterative_dpo.py:cpu", main_fn=main)
