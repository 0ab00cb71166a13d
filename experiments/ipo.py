"""ipo: `python -m experiments.ipo --config configs/ipo.py:cpu --workdir runs/ipo` (see configs/ipo.py)."""

from experiments._main import run

if __name__ == "__main__":
    run("configs/ipo.py:cpu")
