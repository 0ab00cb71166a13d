"""inpo: `python -m experiments.inpo --config configs/inpo.py:cpu --workdir runs/inpo` (see configs/inpo.py)."""

from experiments._main import run

if __name__ == "__main__":
    from alignax.iterate.loop import main

    run("configs/inpo.py:cpu", main_fn=main)
