"""dno: `python -m experiments.dno --config configs/dno.py:cpu --workdir runs/dno` (see configs/dno.py)."""

from experiments._main import run

if __name__ == "__main__":
    from alignax.iterate.loop import main

    run("configs/dno.py:cpu", main_fn=main)
