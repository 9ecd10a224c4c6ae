"""Codebook 0 from sources that are not the paper's AR: the NAR's stage 0 network, the context
table, and the durations and text pointer they and the aligned AR need.  :mod:`.sources` says
which source a model uses and dispatches to it; :mod:`valle2.decoding` holds the paper's path."""
from .sources import DESCRIPTIONS, Code0, choose_source, generate

__all__ = ["Code0", "DESCRIPTIONS", "choose_source", "generate"]
