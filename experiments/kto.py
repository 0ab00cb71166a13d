"""kto: `python -m experiments.kto --config configs/kto.py:cpu --workdir runs/kto` (see configs/kto.py)."""

from experiments._main import run

if __name__ == "__main__":
    run("configs/kto.py:cpu")
