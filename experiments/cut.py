"""cut: `python -m experiments.cut --config configs/cut.py:cpu --workdir runs/cut` (see configs/cut.py)."""
from experiments._main import run

if __name__ == "__main__":
    run("configs/cut.py:cpu")
