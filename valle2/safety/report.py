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


def watermark_report(found, seconds: float) -> dict:
    """The watermark detector's result ``found`` (:class:`valle2.safety.watermark.Detection`) on a
    clip of ``seconds``, as ``valle2 detect`` prints it and ``POST /v1/detect`` returns it:
    present, score, payload, marked_seconds and ``note``, which says when an absent mark means
    little.  Under LOUD_SHORT_SECONDS the watermark's loud layer is read with a handicap (not at all
    under LOUD_MIN_SECONDS), so that real speech is not flagged; a valle2 output that short may then
    go unfound, most of all through noise."""
    from .watermark import LOUD_SHORT_SECONDS

    note = None
    if not found.present and seconds < LOUD_SHORT_SECONDS:
        note = (f"the clip is {seconds:.2f} s, under {LOUD_SHORT_SECONDS} s: the watermark is read less surely there, "
                "so an absent mark says little; check a longer stretch of the recording if there is one")
    return {"present": found.present, "score": round(float(found.score), 2), "payload": found.payload,
            "marked_seconds": [(round(a, 2), round(b, 2)) for a, b in found.marked_seconds], "note": note}


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
