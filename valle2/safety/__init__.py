"""Safeguards around voice cloning: consent records, the synthesis gate, audit log, watermark.

No voice is cloned without a verified, signed consent record (or a signed research-corpus
attestation naming the prompt file); every output is watermarked and logged in a hash chain.
"""
from ..errors import Valle2Error


class ConsentError(Valle2Error):
    """A request to clone a voice that consent does not cover; the message says why."""


from .audit import AuditLog  # noqa: E402
from .consent import ConsentRegistry, CorpusAttestation, Phrase, VoiceRecord, validate_name  # noqa: E402
from .gate import Authorization, ConsentGate, SPEAKER_THRESHOLD, watermark_liveness  # noqa: E402
from .keys import (generate_operator_key, generate_watermark_key, key_id, load_operator_key,  # noqa: E402
                   load_public_key, load_watermark_key)
from .registry import RegistryDB, default_home  # noqa: E402
from .watermark import Detection, detect, embed  # noqa: E402

__all__ = ["ConsentError", "AuditLog", "ConsentRegistry", "CorpusAttestation", "Phrase", "VoiceRecord",
           "validate_name", "Authorization", "ConsentGate", "SPEAKER_THRESHOLD", "watermark_liveness",
           "generate_operator_key", "generate_watermark_key", "key_id", "load_operator_key", "load_public_key",
           "load_watermark_key", "RegistryDB", "default_home", "Detection", "detect", "embed"]
