"""What the detectors say about one clip, as ``valle2 detect`` and ``POST /v1/detect`` report it:
the synthesized-speech classifier, the C2PA manifest, and a one-line verdict with the watermark."""
from __future__ import annotations

from pathlib import Path

from ..errors import ProvenanceError, Valle2Error


def classifier_report(wav, sr: int, detector_path=None) -> dict:
    """The synthesized-speech classifier's report on ``wav [samples]``:
    :meth:`DetectorResult.to_dict`, or ``{"error": ...}`` when the audio cannot be scored (silent,
    too short) or the detector cannot be loaded."""
    from .detector import load_detector

    try:
        return load_detector(detector_path).analyze(wav, sr).to_dict()
    except Valle2Error as exc:
        return {"error": str(exc)}


def verdict(watermark_present: bool, classifier: dict) -> str:
    """One line combining both detectors."""
    if watermark_present:
        return "synthesized: it carries this deployment's valle2 watermark"
    if classifier.get("synthesized"):
        return "likely synthesized: the classifier says so (no valle2 watermark of this deployment)"
    if "error" in classifier:
        return "unknown: no valle2 watermark, and the classifier could not score it"
    return "no sign of synthesis: no valle2 watermark, and the classifier calls it real"


def provenance_report(path: Path) -> dict | None:
    """The file's C2PA manifest (:func:`valle2.safety.provenance.read_provenance`): ``None`` when it
    has none or its format cannot hold one, ``{"error": ...}`` when it cannot be read."""
    from .provenance import MIME, read_provenance

    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in MIME:
        return None
    try:
        return read_provenance(Path(path).read_bytes(), fmt)
    except ProvenanceError as exc:
        return {"error": str(exc)}
