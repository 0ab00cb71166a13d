"""dpo: `python -m experiments.dpo --config configs/dpo.py:cpu --workdir runs/dpo` (see configs/dpo.py)."""

from experiments._main import run

if __name__ == "__main__":
    run("configs/dpo.py:cpu")
