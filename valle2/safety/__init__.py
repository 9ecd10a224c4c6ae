"""Safeguards around voice cloning: consent records, the synthesis gate, audit log, watermark,
synthesized-speech detector.

No voice is cloned without a verified, signed consent record (or a signed research-corpus
attestation naming the prompt file); every output is watermarked and logged in a hash chain.
Its exceptions (``ConsentError``, ``DetectorError``, ...) are in :mod:`valle2.errors`.
"""
from .audit import AuditLog
from .consent import ConsentRegistry, CorpusAttestation, Phrase, VoiceRecord, validate_name
from .detector import (DETECTOR_THRESHOLD, Detector, DetectorConfig, DetectorResult,
                       detector_liveness, load_detector)
from .gate import Authorization, ConsentGate, SPEAKER_THRESHOLD, default_liveness_checks, watermark_liveness
from .keys import (generate_operator_key, generate_watermark_key, key_id, load_operator_key,
                   load_public_key, load_watermark_key)
from .registry import RegistryDB, default_home
from .watermark import Detection, detect, embed

__all__ = ["AuditLog", "ConsentRegistry", "CorpusAttestation", "Phrase", "VoiceRecord",
           "validate_name", "DETECTOR_THRESHOLD", "Detector", "DetectorConfig", "DetectorResult",
           "detector_liveness", "load_detector", "Authorization", "ConsentGate", "SPEAKER_THRESHOLD",
           "default_liveness_checks", "watermark_liveness",
           "generate_operator_key", "generate_watermark_key", "key_id", "load_operator_key", "load_public_key",
           "load_watermark_key", "RegistryDB", "default_home", "Detection", "detect", "embed"]
