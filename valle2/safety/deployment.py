"""A deployment: the operator key, watermark key, registry and audit log under one home folder.

``Deployment.open()`` uses ``$VALLE2_HOME`` (default ``~/.valle2``) and creates what is missing
on first use: ``operator.pem`` (+ ``.pub``), ``watermark.key``, ``registry.db``, ``audit.jsonl``
(whose head, ``audit.jsonl.head``, is signed with the operator key).
``Deployment.open(home, create=False)`` creates nothing: a folder that is not a deployment is an
error (read-only commands such as ``valle2 detect`` use it, so a mistyped ``--home`` cannot pass
for a deployment whose watermark is absent from every file).
Consent recordings and prompts pass the watermark check and the synthesized-speech classifier
(:func:`valle2.safety.gate.default_liveness_checks`).  Besides the operator's own key it trusts
the public keys shipped in ``valle2/assets/keys/``,
which sign the attestation of the shipped demo voice.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DeploymentNotFound
from .audit import AuditLog
from .consent import ConsentRegistry
from .gate import ConsentGate, default_liveness_checks
from .keys import generate_operator_key, generate_watermark_key, load_operator_key, load_public_key, load_watermark_key
from .registry import RegistryDB, default_home

SHIPPED_KEYS = Path(__file__).resolve().parent.parent / "assets" / "keys"
DEPLOYMENT_FILES = ("operator.pem", "watermark.key", "registry.db")


@dataclass
class Deployment:
    home: Path
    registry: ConsentRegistry
    audit: AuditLog
    watermark_key: bytes

    @classmethod
    def open(cls, home=None, create: bool = True) -> "Deployment":
        """Open the deployment at ``home``, creating what is missing on first use; with
        ``create=False`` (what read-only commands use) a home that is not a deployment raises
        :class:`DeploymentNotFound` naming it and what it lacks, and nothing is created."""
        home = Path(home) if home is not None else default_home()
        if not create:
            missing = [n for n in DEPLOYMENT_FILES if not (home / n).is_file()]
            if not home.is_dir() or missing:
                what = "does not exist" if not home.exists() else ("is not a folder" if not home.is_dir() else
                                                                     f"lacks {', '.join(missing)}")
                raise DeploymentNotFound(f"no valle2 deployment at '{home}': it {what}", home)
        home.mkdir(parents=True, exist_ok=True)
        op_path, wm_path = home / "operator.pem", home / "watermark.key"
        operator = load_operator_key(op_path) if op_path.exists() else generate_operator_key(op_path)
        wm_key = load_watermark_key(wm_path) if wm_path.exists() else generate_watermark_key(wm_path)
        trusted = [operator.public_key()] + [load_public_key(p) for p in sorted(SHIPPED_KEYS.glob("*.pub"))]
        audit = AuditLog(home / "audit.jsonl", key=operator)
        registry = ConsentRegistry(RegistryDB(home / "registry.db"), operator, audit, trusted_keys=trusted,
                                   liveness_checks=default_liveness_checks(wm_key))
        return cls(home, registry, audit, wm_key)

    def gate(self, model_id: int = 0) -> ConsentGate:
        """The consent gate every synthesis of this deployment passes."""
        return ConsentGate(self.registry, self.audit, self.watermark_key, model_id=model_id,
                           liveness_checks=default_liveness_checks(self.watermark_key))
