"""soft: `python -m experiments.soft --config configs/soft.py:cpu --workdir runs/soft` (see configs/soft.py)."""

from experiments._main import run

if __name__ == "__main__":
    run("configs/soft.py:cpu")
