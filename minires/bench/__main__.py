"""``python -m minires.bench gpu|cpu|list``: the same as ``minires bench ...``."""
import sys

from ..cli import main

if __name__ == "__main__":  # guarded: spawned worker processes import this module
    sys.exit(main(["bench", *sys.argv[1:]]))
