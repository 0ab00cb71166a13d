"""sppo: `python -m experiments.sppo --config configs/sppo.py:cpu --workdir runs/sppo` (see configs/sppo.py)."""

from experiments._main import run

if __name__ == "__main__":
    from alignax.iterate.loop import main

    run("configs/sppo.py:cpu", main_fn=main)
