"""reward_model: `python -m experiments.reward_model --config configs/reward_model.py:cpu --workdir runs/reward_model` (see configs/reward_model.py)."""

from experiments._main import run

if __name__ == "__main__":
    run("configs/reward_model.py:cpu")
