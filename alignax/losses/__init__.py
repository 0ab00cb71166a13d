"""Objectives: one pure function per method, `(keyword arrays) -> (loss, metrics)`.

Registered by name with what they need (`info(name)`); see docs/objectives.md for the table (name,
paper, formula, inputs, defaults) and docs/batches.md for how the engine feeds them.
"""

# Importing the modules fills the registry. Each module owns one family of objectives.
from alignax.losses import (
    cgpo,  # noqa: F401,E402  CGPO (crpg, codpo, crraft), FSPO
    cut,  # noqa: F401,E402  CUT
    dpo_family,  # noqa: F401,E402  DPO and TRL's reference-based loss types
    dpo_variants,  # noqa: F401,E402  AOT, APO, DiscoPOP, LN-DPO
    kto,  # noqa: F401,E402  KTO
    nash,  # noqa: F401,E402  SPPO, INPO, DNO
    ppo,  # noqa: F401,E402  AlpacaFarm PPO set
    reference_free,  # noqa: F401,E402  SimPO, CPO, ORPO
    reward,  # noqa: F401,E402  reward_bt
    sft,  # noqa: F401,E402  SFT NLL, SoFT
    specdec,  # noqa: F401,E402  SpecDec++ acceptance head
)
from alignax.losses.registry import LossInfo, Unset, get, info, names, register, trained_by

__all__ = ["LossInfo", "Unset", "get", "info", "names", "register", "trained_by"]
