"""simpo: `python -m experiments.simpo --config configs/simpo.py:cpu --workdir runs/simpo` (see configs/simpo.py)."""

from experiments._main import run

if __name__ == "__main__":
    run("configs/simpo.py:cpu")
