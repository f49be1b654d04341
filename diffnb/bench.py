"""`python -m diffnb.bench [--json] [--notebooks PATTERN] [--skip-notebooks]`: the course benchmark, which lives in
diffnb.maint.bench (the maintainers' corner); this entry point keeps the command and the old import path."""
import sys

from diffnb.maint.bench import *  # noqa: F401,F403
from diffnb.maint.bench import EXTRA_BENCHMARKS, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
