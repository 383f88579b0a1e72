"""Entry point for `ray job submit ... -- python -m pipelines.preprocess --input URI --output URI`.

Same flags as `musicgen preprocess --help`; the job joins the cluster it was submitted to.
"""

import sys

from musicgen.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
