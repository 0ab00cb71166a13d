"""Reward functions and preference annotation: CDR density ratios, a Bradley–Terry head, pairs, the job."""

from alignax.annotate.density_ratio import (  # noqa: F401
    DOMAINS,
    Customization,
    DensityRatioRewards,
    customize_prompt,
    density_ratio_reward_fn,
    density_ratio_rewards,
    llm_judge,
    route_keyword,
    route_with_judge,
    sequence_logprobs,
)
from alignax.annotate.job import AnnotateConfig, annotate  # noqa: F401
from alignax.annotate.pairs import select_pair  # noqa: F401
from alignax.annotate.reward_model import RewardModel, reward_model_fn, reward_model_rewards  # noqa: F401
