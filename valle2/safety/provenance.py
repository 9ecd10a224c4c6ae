"""C2PA provenance manifests on output files (the optional extra ``pip install "valle2[c2pa]"``).

A signed C2PA manifest says, in the file itself, that the audio was made by an AI model
(IPTC digital source type ``trainedAlgorithmicMedia``) and which synthesis of the audit log made
it: ``org.valle2.synthesis`` holds the voice id or research corpus, the watermark payload, the
SHA-256 of the text, of the model file and of the output samples (the ``output_sha256`` of the
audit log's ``synthesis`` entry).  The watermark survives re-encoding; the manifest does not,
but it names its signer and proves the file unedited since.

Signing uses a local certificate chain kept in the deployment: ``c2pa/ca.pem`` (a local root,
10 years), ``c2pa/signer.pem`` (its ES256 end-entity certificate, then the root) and
``c2pa/signer.key`` (mode 0600), created on first use.  Readers report such files as
``Valid`` with ``signingCredential.untrusted`` until they trust the deployment's root; an
operator with a certificate from a C2PA trust-list CA puts its chain and key there instead.
Formats: wav, flac and mp3 (c2pa has no Ogg/Opus support).
"""
from __future__ import annotations

import datetime
import io
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProvenanceError
from .keys import _read_private, _write_private

MIME = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}
AI_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
LABEL = "org.valle2.synthesis"


def _c2pa():
    try:
        import c2pa
    except ImportError:
        raise ProvenanceError('C2PA manifests need the c2pa extra: pip install "valle2[c2pa]"') from None
    return c2pa


def mime_type(fmt: str) -> str:
    """The MIME type c2pa needs for file format ``fmt`` (wav, flac, mp3); ProvenanceError for others."""
    fmt = fmt.lower().lstrip(".")
    if fmt not in MIME:
        raise ProvenanceError(f"C2PA manifests can go in {', '.join(MIME)} files, not '{fmt}'")
    return MIME[fmt]


def _make_chain(folder: Path) -> None:
    """A local root CA and an ES256 signing certificate with the key usages C2PA requires."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "valle2 deployment")])

    def usage(**on) -> x509.KeyUsage:
        flags = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                 "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
        return x509.KeyUsage(**{f: on.get(f, False) for f in flags})

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("valle2 local C2PA root")).issuer_name(name("valle2 local C2PA root"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    ee = (x509.CertificateBuilder().subject_name(name("valle2 synthesis signer")).issuer_name(ca.subject)
          .public_key(key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
          .add_extension(usage(digital_signature=True), critical=True)
          .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    _write_private(folder / "signer.key", key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    from ..audio import atomic_write_bytes

    atomic_write_bytes(folder / "ca.pem", ca.public_bytes(pem))
    atomic_write_bytes(folder / "signer.pem", ee.public_bytes(pem) + ca.public_bytes(pem))


@dataclass
class ProvenanceSigner:
    """Signs output files with the deployment's C2PA certificate chain (PEM bytes)."""

    cert_chain: bytes
    private_key: bytes

    @classmethod
    def open(cls, home) -> "ProvenanceSigner":
        """The signer of the deployment at ``home``, creating its certificates on first use."""
        folder = Path(home) / "c2pa"
        if not (folder / "signer.key").exists():
            _make_chain(folder)
        if not (folder / "signer.pem").is_file():
            raise ProvenanceError(f"'{folder / 'signer.key'}' has no certificate chain beside it ('signer.pem')")
        return cls((folder / "signer.pem").read_bytes(), _read_private(folder / "signer.key"))

    def sign(self, data: bytes, fmt: str, synthesis: dict, title: str = "valle2 output") -> bytes:
        """``data``: the encoded file (wav/flac/mp3 bytes) -> the same file with a signed manifest
        whose ``org.valle2.synthesis`` assertion holds ``synthesis`` (JSON-serialisable)."""
        from importlib.metadata import version

        c2pa = _c2pa()
        release = version("valle2")   # the installed package's metadata: safety does not import the valle2 root
        manifest = {"claim_generator_info": [{"name": "valle2", "version": release}], "title": title,
                    "assertions": [{"label": "c2pa.actions", "data": {"actions": [{
                        "action": "c2pa.created", "digitalSourceType": AI_SOURCE,
                        "softwareAgent": {"name": "valle2", "version": release}}]}},
                        {"label": LABEL, "data": synthesis}]}
        mime = mime_type(fmt)
        try:
            signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg=c2pa.C2paSigningAlg.ES256, sign_cert=self.cert_chain,
                                                               private_key=self.private_key, ta_url=None))
            out = io.BytesIO()
            with c2pa.Builder(json.dumps(manifest)) as builder:
                builder.sign(signer, mime, io.BytesIO(data), out)
        except c2pa.C2paError as exc:
            raise ProvenanceError(f"C2PA signing failed: {exc}") from None
        return out.getvalue()


def read_provenance(data: bytes, fmt: str) -> dict | None:
    """The C2PA report of an encoded file: ``None`` when it carries no manifest, else
    ``{"state": "Valid" | "Trusted" | "Invalid", "signer", "issuer", "ai_generated", "synthesis",
    "problems": [validation codes other than an untrusted signer]}``."""
    c2pa = _c2pa()
    try:
        with c2pa.Reader(mime_type(fmt), io.BytesIO(data)) as reader:
            store, state = json.loads(reader.json()), str(reader.get_validation_state())
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in str(exc) or "not found" in str(exc).lower():
            return None
        raise ProvenanceError(f"cannot read the C2PA manifest: {exc}") from None
    active = store["manifests"][store["active_manifest"]]
    assertions = {a["label"]: a["data"] for a in active.get("assertions", [])}
    actions = next((v["actions"] for k, v in assertions.items() if k.startswith("c2pa.actions")), [])
    info = active.get("signature_info", {})
    return {"state": state, "signer": info.get("common_name"), "issuer": info.get("issuer"),
            "ai_generated": any(a.get("digitalSourceType") == AI_SOURCE for a in actions),
            "synthesis": assertions.get(LABEL),
            "problems": [s["code"] for s in store.get("validation_status", []) if s["code"] != "signingCredential.untrusted"]}


def synthesis_assertion(audit, wav, **extra) -> dict:
    """The ``org.valle2.synthesis`` data of output ``wav [samples]`` (float32, as the gate returned
    it): the audit log's ``synthesis`` entry whose ``output_sha256`` it matches, plus ``extra``."""
    from .gate import output_sha256

    digest = output_sha256(wav)
    entry = next((e for e in reversed(audit.entries()) if e.get("event") == "synthesis" and e.get("output_sha256") == digest),
                 None)
    if entry is None:
        raise ProvenanceError("no synthesis entry of the audit log has these samples: manifests go only on valle2 outputs")
    keep = ("voice_id", "corpus_id", "payload", "text_sha256", "output_sha256", "seq")
    return {**{("audit_seq" if k == "seq" else k): entry.get(k) for k in keep}, **extra}


def save_with_manifest(path, wav, sr: int, signer: ProvenanceSigner, synthesis: dict) -> Path:
    """Encode ``wav`` by ``path``'s extension, sign it and write it atomically."""
    from ..audio import atomic_write_bytes, encode_audio

    fmt = Path(path).suffix.lstrip(".").lower() or "wav"
    mime_type(fmt)
    return atomic_write_bytes(path, signer.sign(encode_audio(wav, sr, fmt), fmt, synthesis, title=Path(path).name))
