"""Safeguards around voice cloning: consent records, the synthesis gate, audit log, watermark,
synthesized-speech detector.

No voice is cloned without a verified, signed consent record (or a signed research-corpus
attestation naming the prompt file); every output is watermarked and logged in a hash chain.
"""
from ..errors import Valle2Error


class ConsentError(Valle2Error):
    """A request to clone a voice that consent does not cover; the message says why."""


from .audit import AuditLog  # noqa: E402
from .consent import ConsentRegistry, CorpusAttestation, Phrase, VoiceRecord, validate_name  # noqa: E402
from .detector import (DETECTOR_THRESHOLD, Detector, DetectorConfig, DetectorError, DetectorResult,  # noqa: E402
                       detector_liveness, load_detector)
from .gate import Authorization, ConsentGate, SPEAKER_THRESHOLD, default_liveness_checks, watermark_liveness  # noqa: E402
from .keys import (generate_operator_key, generate_watermark_key, key_id, load_operator_key,  # noqa: E402
                   load_public_key, load_watermark_key)
from .registry import RegistryDB, default_home  # noqa: E402
from .watermark import Detection, detect, embed  # noqa: E402

__all__ = ["ConsentError", "AuditLog", "ConsentRegistry", "CorpusAttestation", "Phrase", "VoiceRecord",
           "validate_name", "DETECTOR_THRESHOLD", "Detector", "DetectorConfig", "DetectorError", "DetectorResult",
           "detector_liveness", "load_detector", "Authorization", "ConsentGate", "SPEAKER_THRESHOLD",
           "default_liveness_checks", "watermark_liveness",
           "generate_operator_key", "generate_watermark_key", "key_id", "load_operator_key", "load_public_key",
           "load_watermark_key", "RegistryDB", "default_home", "Detection", "detect", "embed"]
