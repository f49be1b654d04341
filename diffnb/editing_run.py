"""`python -m diffnb.editing_run train|grid|evaluate|install RUN_DIR`: notebook 04's full run, which lives in
diffnb.maint.editing_run (the maintainers' corner); this entry point keeps the command. The notebook's scores and
loaders are in diffnb.editing_eval."""
import sys

from diffnb.maint.editing_run import *  # noqa: F401,F403
from diffnb.maint.editing_run import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
