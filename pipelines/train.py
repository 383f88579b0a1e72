"""Entry point for `ray job submit ... -- python -m pipelines.train --data URI --name RUN --storage URI`.

Same flags as `musicgen train --help`; the job joins the cluster it was submitted to.
"""

import sys

from musicgen.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
