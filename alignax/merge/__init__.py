"""Model merging on Hugging Face safetensors folders: task arithmetic, TIES, DARE (linear / TIES).

    python -m alignax.merge --base A --models B C --method dare_ties --weights 1 0.5 --density 0.3 --seed 0 --out D

    from alignax.merge import make_spec, merge
    merge("A", ["B", "C"], make_spec("ties", 2, density=0.5), "D")

Formulas and the choices made against mergekit: methods.py. Streaming and output layout: pipeline.py.
Reading and writing safetensors without holding a shard: checkpoint.py. Memory: benchmarks/merge_memory.py.
"""

from alignax.merge.checkpoint import MergeError
from alignax.merge.methods import METHODS
from alignax.merge.pipeline import MergeSpec, make_spec, merge

__all__ = ["METHODS", "MergeError", "MergeSpec", "make_spec", "merge"]
