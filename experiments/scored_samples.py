"""scored_samples: `python -m experiments.scored_samples --config configs/scored_samples.py:cpu --workdir runs/s`
(see configs/scored_samples.py)."""

from experiments._main import run

if __name__ == "__main__":
    run("configs/scored_samples.py:cpu")
