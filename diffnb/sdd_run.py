"""`python -m diffnb.sdd_run full-run|install RUN_DIR` (also `python -m diffnb.sdd full-run|install ...`): SDD's full
run for notebook 07, which lives in diffnb.maint.sdd_run (the maintainers' corner); this entry point keeps the command
and the old import path. The names notebook 07 loads the shipped run with (NAME, STRATEGIES, file_name) are in
diffnb.sdd_eval."""
import sys

from diffnb.maint.sdd_run import *  # noqa: F401,F403
from diffnb.maint.sdd_run import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
