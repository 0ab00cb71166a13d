"""alignax: preference alignment of language models in JAX/Flax.

Layout (bottom to top; nothing imports from above it):
  models/ ops/ -> losses/ -> data/ sample/ annotate/ synth/ evaluate/ merge/ -> train/ -> experiments/
"""

__version__ = "0.1.0"
