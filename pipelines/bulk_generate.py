"""Entry point for `ray job submit ... -- python -m pipelines.bulk_generate --model URI --out URI --per-style N`.

Same flags as `musicgen bulk --help`; the job joins the cluster it was submitted to.
"""

import sys

from musicgen.cli import main

if __name__ == "__main__":
    sys.exit(main(["bulk", *sys.argv[1:]]))
