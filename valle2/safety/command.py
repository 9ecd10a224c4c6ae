"""CLI of the safeguards: ``valle2 voice ...``, ``valle2 corpus attest``, ``valle2 audit verify|sign-head``, ``valle2 detect``.

``valle2 detect`` reports the watermark (which needs the deployment's key) and the
synthesized-speech classifier (:mod:`valle2.safety.detector`), which needs no key.

All commands act on the deployment at ``$VALLE2_HOME`` (default ``~/.valle2``) or ``--home``.
Only ``voice phrase`` and ``corpus attest`` create a deployment there on first use; every other
command (``detect``, ``voice list``, ``voice enroll``, ``voice revoke``, ``audit verify``) needs one
that exists and says so, naming the folder, rather than create an empty one.
"""
from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path


def _deployment(args, create: bool = False):
    """The deployment of ``--home`` / ``$VALLE2_HOME``; ``create`` only for the commands that may
    start one (a mistyped folder must not pass for a new, empty deployment)."""
    import os

    from .deployment import Deployment, DeploymentNotFound

    try:
        return Deployment.open(args.home, create=create)
    except DeploymentNotFound as exc:
        given = ("--home" if args.home is not None else
                 "$VALLE2_HOME" if os.environ.get("VALLE2_HOME") else "the default ~/.valle2 (no --home, no $VALLE2_HOME)")
        raise DeploymentNotFound(f"{exc} (the folder comes from {given}): check the path; `valle2 voice phrase` "
                                 "or `valle2 corpus attest` start a new deployment", exc.home) from None


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cmd_phrase(args) -> int:
    phrase = _deployment(args, create=True).registry.issue_phrase(args.name)
    print(f"phrase id: {phrase.id}  (valid until {_when(phrase.expires)}, once)")
    print(f"Ask {phrase.name} to read aloud, then run `valle2 voice enroll --phrase-id {phrase.id} ...`:")
    print(f"\n    {phrase.text}\n")
    return 0


def cmd_enroll(args) -> int:
    from ..audio import load_audio

    wav, sr = load_audio(args.consent)
    record = _deployment(args).registry.enroll(args.name, wav, sr, args.phrase_id)
    print(f"enrolled {record.name}: voice id {record.voice_id} (valid until {_when(record.expires)})")
    return 0


def cmd_revoke(args) -> int:
    _deployment(args).registry.revoke(args.voice_id, args.reason)
    print(f"revoked {args.voice_id}")
    return 0


def cmd_list(args) -> int:
    rows = _deployment(args).registry.db.query("SELECT id, name, created, revoked FROM voices ORDER BY created")
    if not rows:
        print("no voices enrolled")
    for vid, name, created, revoked in rows:
        print(f"{vid}  {name:<30} enrolled {_when(created)}" + (f"  REVOKED {_when(revoked)}" if revoked else ""))
    return 0


def cmd_attest(args) -> int:
    att = _deployment(args, create=True).registry.attest_corpus(args.name, args.files, args.licence)
    print(f"attested corpus {att.name!r}: {att.corpus_id}, {len(att.files)} file(s), signed by key {att.key_id}")
    return 0


def cmd_audit_verify(args) -> int:
    from . import ConsentError

    dep = _deployment(args)
    report = dep.audit.check()
    print(report.summary(dep.audit.path))
    if not report.ok:
        return 1
    try:
        problems = dep.registry.cross_check()
    except ConsentError as e:
        problems = [str(e)]
    for problem in problems:
        print(f"registry {dep.registry.db.path}: {problem}")
    if not problems:
        print(f"registry {dep.registry.db.path}: agrees with the audit log (enrolments and revocations)")
    return 1 if problems else 0


def cmd_audit_sign_head(args) -> int:
    dep = _deployment(args)
    before = dep.audit.check()
    report = dep.audit.sign_head()
    if before.ok:
        print(f"audit log {dep.audit.path}: its head is already signed; nothing to do")
    else:
        print(f"audit log {dep.audit.path}: chain of {before.entries} entries verified; head now signed with the "
              "operator key (logged as audit_head_signed)")
    print(report.summary(dep.audit.path))
    return 0 if report.ok else 1


def classifier_report(wav, sr: int, detector_path=None) -> dict:
    """The synthesized-speech classifier's report on ``wav [samples]`` for ``valle2 detect`` and
    ``POST /v1/detect``: :meth:`DetectorResult.to_dict`, or ``{"error": ...}`` when the audio
    cannot be scored (silent, too short) or the detector cannot be loaded."""
    from ..errors import Valle2Error
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
    from .provenance import MIME, ProvenanceError, read_provenance

    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in MIME:
        return None
    try:
        return read_provenance(Path(path).read_bytes(), fmt)
    except ProvenanceError as exc:
        return {"error": str(exc)}


# ``valle2 detect``'s exit statuses, for scripts (also in its --help and the README)
DETECT_CLEAN, DETECT_SYNTHESIZED, DETECT_ERROR, DETECT_UNKNOWN = 0, 1, 2, 3
DETECT_EPILOG = """exit status:
  0  no sign of synthesis: no valle2 watermark of this deployment, and the classifier calls it real
  1  synthesized: it carries this deployment's valle2 watermark, or the classifier calls it synthesized
  2  error: the file, the deployment (--home) or the --detector weights could not be used; nothing was judged
  3  unknown: no watermark, and the classifier could not score the audio (silent or too short)"""


def detect_status(watermark_present: bool, classifier: dict, detector_loaded: bool = True) -> int:
    """``valle2 detect``'s exit status for a verdict (see ``DETECT_EPILOG``): a classifier whose
    weights could not be loaded is an error (2) unless the watermark already answers."""
    if watermark_present or classifier.get("synthesized"):
        return DETECT_SYNTHESIZED
    if "error" in classifier:
        return DETECT_UNKNOWN if detector_loaded else DETECT_ERROR
    return DETECT_CLEAN


def cmd_detect(args) -> int:
    import sys

    try:
        return _detect(args)
    except (OSError, RuntimeError, ValueError) as exc:   # not Valle2Error (exit 2 in run_command): no traceback's exit 1
        from ..errors import Valle2Error

        if isinstance(exc, Valle2Error):
            raise
        print(f"valle2 detect: error: cannot check '{args.file}': {type(exc).__name__}: {exc}", file=sys.stderr)
        return DETECT_ERROR


def _detect(args) -> int:
    from ..audio import load_audio
    from ..errors import Valle2Error
    from .detector import load_detector
    from .watermark import detect

    try:
        load_detector(args.detector)   # cached: classifier_report below uses the same load
        detector_loaded = True
    except Valle2Error:
        detector_loaded = False

    dep = _deployment(args)
    wav, sr = load_audio(args.file, allow_silent=True)
    found = detect(wav, sr, dep.watermark_key)
    classifier = classifier_report(wav, sr, args.detector)
    report = {"file": str(args.file), "watermark": {"present": found.present, "score": round(found.score, 2),
              "payload": found.payload, "marked_seconds": [[round(a, 2), round(b, 2)] for a, b in found.marked_seconds]},
              "classifier": classifier, "provenance": provenance_report(args.file),
              "verdict": verdict(found.present, classifier)}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        w = report["watermark"]
        print(f"{args.file}: {report['verdict']}")
        print(f"  watermark {'PRESENT' if w['present'] else 'absent'} (score {w['score']})")
        if w["present"]:
            print(f"  payload {w['payload']} (model id {w['payload'] >> 8}, consent id hash {w['payload'] & 0xFF})")
            print(f"  marked seconds: {', '.join(f'{a}-{b}' for a, b in w['marked_seconds'])}")
        if "error" in classifier:
            print(f"  classifier: not scored: {classifier['error']}")
        else:
            print(f"  classifier: {'SYNTHESIZED' if classifier['synthesized'] else 'real'} (probability "
                  f"{classifier['score']:.3f}, threshold {classifier['threshold']}; mean {classifier['mean']:.3f} "
                  f"over {len(classifier['windows'])} window(s))")
            print("  windows: " + ", ".join(f"{a}-{b} s {p:.3f}" for a, b, p in classifier["windows"]))
        c2pa = report["provenance"]
        if c2pa is None:
            print("  C2PA manifest: none")
        elif "error" in c2pa:
            print(f"  C2PA manifest: not read: {c2pa['error']}")
        else:
            print(f"  C2PA manifest: {c2pa['state']}, signed by {c2pa['signer']!r} ({c2pa['issuer']}), "
                  f"AI-generated: {c2pa['ai_generated']}; synthesis: {json.dumps(c2pa['synthesis'])}"
                  + (f"; problems: {', '.join(c2pa['problems'])}" if c2pa["problems"] else ""))
    if "error" in classifier and not detector_loaded:
        import sys

        print(f"valle2 detect: error: the classifier's weights could not be loaded (see --detector): {classifier['error']}",
              file=sys.stderr)
    return detect_status(found.present, classifier, detector_loaded)


def add_safety_parsers(sub) -> None:
    """Register ``voice``, ``corpus``, ``audit`` and ``detect`` on the CLI's subparsers."""
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", type=Path, default=None, help="deployment folder (default $VALLE2_HOME or ~/.valle2)")

    voice = sub.add_parser("voice", help="the consent protocol: phrase, enroll, list, revoke")
    vsub = voice.add_subparsers(dest="voice_command", required=True)
    p = vsub.add_parser("phrase", parents=[home], help="issue a one-time consent phrase for a speaker")
    p.add_argument("--name", required=True, help="the speaker's full name")
    p.set_defaults(func=cmd_phrase)
    p = vsub.add_parser("enroll", parents=[home], help="enrol a voice from a recording of its consent phrase")
    p.add_argument("--name", required=True)
    p.add_argument("--phrase-id", required=True)
    p.add_argument("--consent", required=True, type=Path, help="recording of the speaker reading the phrase")
    p.set_defaults(func=cmd_enroll)
    p = vsub.add_parser("revoke", parents=[home], help="revoke a voice at once")
    p.add_argument("voice_id")
    p.add_argument("--reason", default="")
    p.set_defaults(func=cmd_revoke)
    p = vsub.add_parser("list", parents=[home], help="list enrolled voices")
    p.set_defaults(func=cmd_list)

    corpus = sub.add_parser("corpus", help="research-corpus attestations")
    csub = corpus.add_subparsers(dest="corpus_command", required=True)
    p = csub.add_parser("attest", parents=[home], help="sign an attestation that files form a licensed research corpus")
    p.add_argument("--name", required=True)
    p.add_argument("--licence", required=True)
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(func=cmd_attest)

    audit = sub.add_parser("audit", help="the hash-chained audit log")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    p = asub.add_parser("verify", parents=[home], help="check the chain and its signed head (no entry edited, removed, "
                        "reordered or added without the operator key) and that the registry agrees with the log")
    p.set_defaults(func=cmd_audit_verify)
    p = asub.add_parser("sign-head", parents=[home], help="upgrade a log from before signed heads: verify the chain, "
                        "then sign its head with the operator key")
    p.set_defaults(func=cmd_audit_sign_head)

    p = sub.add_parser("detect", parents=[home], help="report the watermark and the synthesized-speech classifier on an audio file",
                       epilog=DETECT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true")
    p.add_argument("--detector", type=Path, default=None, help="classifier weights (default: the shipped ones)")
    p.set_defaults(func=cmd_detect)

