"""alignax: preference alignment of language models in JAX/Flax.

Install for development:   pip install -e '.[test]'
The Makefile does this (and the real-model package) in .venv: `make test`, `make demo`.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "chex==0.1.92",
    "ml-collections==1.1.0",
    "tensorflow-datasets==4.9.10",
    "array-record",
    "grain==0.2.18",
    "tokenizers>=0.21,<0.22",
    "safetensors>=0.4",
    "gguf>=0.17",
    "jinja2>=3.1",
    "numpy>=1.26",
    "pandas>=2.0",
    "pyarrow>=15",
    "scikit-learn>=1.4",
    "tensorboardX>=2.6",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "absl-py>=2.0",
    "rouge-score==0.1.2",  # L-Eval ROUGE (evaluate.leval)
    "nltk>=3.9",  # rouge-score dependency; sentence split for rougeLsum
]

TEST_REQUIRES = [
    "pytest>=8",
    "pytest-timeout",
    "pytest-xdist==3.6.1",  # `make test` runs the suite in 2 worker processes (one compiles while one runs)
    "torch==2.13.0",  # the CPU wheel on local disk; an unpinned torch pulls a CUDA build
    "transformers==4.53.3",
    "trl==0.19.1",
    "accelerate>=1.0",
    "alpaca-eval==0.6.6",
    "setuptools<81",  # alpaca-eval imports pkg_resources
    "datasets>=2.19",
    "patsy",
    "ruff==0.17.6",  # `make lint`: the one formatter and linter (ruff.toml)
    "openai>=1.40",  # the official client, against alignax.serve in tests
    "peft==0.17.1",  # LoRA export loaded by the real PEFT in tests (works with transformers 4.53.3)
    "nbclient==0.11.0",  # tests/test_notebooks.py executes colab/*.ipynb
    "nbformat==5.11.1",
    "ipykernel==7.4.0",  # the kernel the notebooks run in
]

setup(
    name="alignax",
    version="0.1.0",
    description="Preference alignment of language models in JAX/Flax",
    # Only the library: configs/, experiments/ and benchmarks/ run from the repository root
    # (`python -m experiments.dpo ...`), so no top-level `configs` or `experiments` package lands in
    # site-packages, where it would shadow a user's own modules.
    packages=find_packages(include=["alignax", "alignax.*"]),
    package_data={"alignax": ["data/builtin/*.jsonl", "data/builtin/*.json"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES, "gpu": ["jax[cuda12]==0.10.2"]},
)
