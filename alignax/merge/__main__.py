"""`python -m alignax.merge ...`: see alignax/merge/cli.py."""

import sys

from alignax.merge.cli import main

sys.exit(main())
