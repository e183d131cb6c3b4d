"""``python -m minires.bench gpu|cpu|list``: the same as ``minires bench ...``."""
import sys

from ..cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
