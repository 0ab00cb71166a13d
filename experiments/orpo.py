"""orpo: `python -m experiments.orpo --config configs/orpo.py:cpu --workdir runs/orpo` (see configs/orpo.py)."""

from experiments._main import run

if __name__ == "__main__":
    run("configs/orpo.py:cpu")
