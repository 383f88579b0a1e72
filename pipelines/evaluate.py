"""Entry point for `ray job submit ... -- python -m pipelines.evaluate --generated CATALOG --data SHARDS --out DIR`.

Same flags as `musicgen evaluate --help`; with --generated the catalog's melodies are judged by a
Ray Data actor pool on the cluster the job was submitted to.
"""

import sys

from musicgen.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
