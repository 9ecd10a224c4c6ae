"""The one place the evaluation meets the safeguards: the deployment's consent gate, with a
research-corpus attestation that covers the test files.  Every prompt passes ``gate.authorize``
(with its source file) and every output ``gate.finalize`` (watermark + audit log) -- see
:mod:`valle2.safety.gate` and :mod:`valle2.safety.deployment`."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import ConsentError
from ..safety import ConsentGate


def open_research_gate(home: str | Path | None, files: Sequence[Path], corpus_name: str, licence: str | None) -> ConsentGate:
    """The gate of the deployment at ``home`` (default ``$VALLE2_HOME`` / ``~/.valle2``; created on
    first use) in which every file of ``files`` is attested.  Files not yet in an attestation are
    attested now as corpus ``corpus_name`` under ``licence`` (the operator's statement that the
    licence allows this research use); without a licence they are refused."""
    from ..safety.deployment import Deployment

    deployment = Deployment.open(home)
    missing = []
    for f in dict.fromkeys(Path(f) for f in files):
        try:
            deployment.registry.corpus_for_file(f)
        except ConsentError:
            missing.append(f)
    if missing:
        if not licence:
            raise ConsentError(f"{len(missing)} test file(s) (e.g. '{missing[0]}') are in no attested research corpus: "
                               "pass the corpus licence (--corpus-licence) to attest them")
        deployment.registry.attest_corpus(corpus_name, missing, licence)
    return deployment.gate()
