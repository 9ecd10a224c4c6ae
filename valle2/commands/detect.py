"""``valle2 detect FILE``: report the watermark (which needs the deployment's key), the
synthesized-speech classifier (:mod:`valle2.safety.detector`, which needs no key) and the file's
C2PA manifest; the exit status says which verdict (``DETECT_EPILOG``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import Valle2Error
from .options import add_home_arg, open_deployment

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


def run(args: argparse.Namespace) -> int:
    try:
        return _detect(args)
    except (OSError, RuntimeError, ValueError) as exc:   # not Valle2Error (exit 2 in run_command): no traceback's exit 1
        if isinstance(exc, Valle2Error):
            raise
        print(f"valle2 detect: error: cannot check '{args.file}': {type(exc).__name__}: {exc}", file=sys.stderr)
        return DETECT_ERROR


def _detect(args: argparse.Namespace) -> int:
    from ..audio import load_audio
    from ..safety.detector import load_detector
    from ..safety.report import classifier_report, provenance_report, verdict, watermark_report
    from ..safety.watermark import detect

    try:
        load_detector(args.detector)   # cached: classifier_report below uses the same load
        detector_loaded = True
    except Valle2Error:
        detector_loaded = False

    dep = open_deployment(args)
    wav, sr = load_audio(args.file, allow_silent=True)
    found = detect(wav, sr, dep.watermark_key)
    classifier = classifier_report(wav, sr, args.detector)
    report = {"file": str(args.file), "watermark": watermark_report(found, wav.size / sr),
              "classifier": classifier, "provenance": provenance_report(args.file),
              "verdict": verdict(found.present, classifier)}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        w = report["watermark"]
        print(f"{args.file}: {report['verdict']}")
        print(f"  watermark {'PRESENT' if w['present'] else 'absent'} (score {w['score']})")
        if w["note"]:
            print(f"  note: {w['note']}")
        if w["present"]:
            if w["payload"] is None:
                print("  payload unreadable (the mark was found in its loud layer only, which carries none)")
            else:
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
        print(f"valle2 detect: error: the classifier's weights could not be loaded (see --detector): {classifier['error']}",
              file=sys.stderr)
    return detect_status(found.present, classifier, detector_loaded)


def register(sub) -> None:
    p = sub.add_parser("detect", help="report the watermark and the synthesized-speech classifier on an audio file",
                       epilog=DETECT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_home_arg(p)
    p.add_argument("file", type=Path, help="the audio file to check")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--detector", type=Path, default=None, help="classifier weights (default: the shipped ones)")
    p.set_defaults(func=run)
