"""sft: `python -m experiments.sft --config configs/sft.py:cpu --workdir runs/sft` (see configs/sft.py)."""

from experiments._main import run

if __name__ == "__main__":
    run("configs/sft.py:cpu")
