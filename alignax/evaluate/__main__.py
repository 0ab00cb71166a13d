"""`python -m alignax.evaluate <benchmark> ...`; see alignax/evaluate/cli.py."""

import sys

from alignax.compile_cache import enable_compilation_cache
from alignax.evaluate.cli import main

if __name__ == "__main__":
    enable_compilation_cache()
    sys.exit(main())
