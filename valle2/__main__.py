"""``python -m valle2 ARGS``: the ``valle2`` command line (:mod:`valle2.commands`); under
``torchrun -m valle2 train ...`` it trains with several processes."""
import sys

from .commands import main

sys.exit(main())
