"""`python -m alignax.evaluate <benchmark> ...`; see alignax/evaluate/cli.py."""
import sys

from alignax.evaluate.cli import main

if __name__ == "__main__":
  sys.exit(main())
