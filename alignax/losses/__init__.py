"""Objectives: one pure function per method, `(keyword arrays) -> (loss, metrics)`.

Registered by name with what they need (`info(name)`); see docs/objectives.md for the table (name,
paper, formula, inputs, defaults) and docs/batches.md for how the engine feeds them.
"""

from alignax.losses.registry import LossInfo, Unset, get, info, names, register, trained_by

# Importing the modules fills the registry. Each module owns one family of objectives.
from alignax.losses import dpo_family  # noqa: F401,E402  DPO and TRL's reference-based loss types, LN-DPO
from alignax.losses import reference_free  # noqa: F401,E402  SimPO, CPO, ORPO
from alignax.losses import kto  # noqa: F401,E402  KTO
from alignax.losses import sft  # noqa: F401,E402  SFT NLL, SoFT
from alignax.losses import nash  # noqa: F401,E402  SPPO, INPO, DNO
from alignax.losses import cut  # noqa: F401,E402  CUT
from alignax.losses import cgpo  # noqa: F401,E402  CGPO (crpg, codpo, crraft), FSPO
from alignax.losses import reward  # noqa: F401,E402  reward_bt
from alignax.losses import ppo  # noqa: F401,E402  AlpacaFarm PPO set
from alignax.losses import specdec  # noqa: F401,E402  SpecDec++ acceptance head

__all__ = ["LossInfo", "Unset", "get", "info", "names", "register", "trained_by"]
