"""The safeguards' command line: phrases, enrolment refusals, attest, list, revoke, audit, detect."""
import numpy as np
import soundfile as sf

from valle2.commands import main


def test_voice_lifecycle_on_the_command_line(tmp_path, clips, capsys, deployment):
    home = ["--home", str(tmp_path / "home")]
    assert main(["voice", "phrase", "--name", "Ada Lovelace", *home]) == 0
    out = capsys.readouterr().out
    pid = out.split("phrase id: ")[1].split()[0]
    assert "I, Ada Lovelace, agree" in out and "for one enrolment of this person; 3 attempts)" in out
    # a recording that does not say the phrase is refused, with the reason and what to do next
    enroll = ["voice", "enroll", "--name", "Ada Lovelace", "--phrase-id", pid, "--consent", str(clips[0].path), *home]
    assert main(enroll) == 2
    err = capsys.readouterr().err
    assert "error" in err and "code words" in err and "2 attempt(s) left with this phrase" in err
    # the phrase allows 3 attempts: the third failure expires it, and a fourth is told to issue a new phrase
    assert main(enroll) == 2 and "1 attempt(s) left" in capsys.readouterr().err
    assert main(enroll) == 2 and "the last of 3 attempts, so the phrase has expired" in capsys.readouterr().err
    assert main(enroll) == 2
    assert "expired after 3 failed attempts; issue a new one with `valle2 voice phrase" in capsys.readouterr().err
    # an SQL-injection name is refused before anything is stored
    assert main(["voice", "phrase", "--name", "x'); DROP TABLE voices;--", *home]) == 2
    assert "name" in capsys.readouterr().err
    assert main(["voice", "list", *home]) == 0 and "no voices enrolled" in capsys.readouterr().out
    assert main(["voice", "revoke", "v_missing", *home]) == 2 and "not enrolled" in capsys.readouterr().err
    assert main(["corpus", "attest", "--name", "ARCTIC", "--licence", "CMU ARCTIC licence", str(clips[0].path), *home]) == 0
    assert "1 file(s)" in capsys.readouterr().out
    assert main(["audit", "verify", *home]) == 0 and "intact" in capsys.readouterr().out
    log = tmp_path / "home" / "audit.jsonl"
    lines = log.read_text().splitlines()
    lines[0] = lines[0].replace("Ada", "Eve")
    log.write_text("\n".join(lines) + "\n")
    assert main(["audit", "verify", *home]) == 1 and "BROKEN at line" in capsys.readouterr().out


def test_detect_reports_watermark(tmp_path, clips, capsys, deployment):
    from valle2.safety import embed

    wav, sr = sf.read(clips[0].path, dtype="float32")
    marked = embed(np.tile(wav, 3), sr, 0x1234, deployment.watermark_key)
    sf.write(tmp_path / "marked.wav", marked, sr)
    assert main(["detect", str(tmp_path / "marked.wav")]) == 1   # exit status 1: synthesized
    out = capsys.readouterr().out
    assert "PRESENT" in out and "payload 4660" in out
    assert main(["detect", str(clips[1].path)]) == 0
    out = capsys.readouterr().out
    assert "absent" in out and "note:" not in out
    sf.write(tmp_path / "short.wav", wav[: int(0.8 * sr)], sr)    # 0.8 s: the watermark's reach is named
    assert main(["detect", str(tmp_path / "short.wav")]) == 0
    assert "note: the clip is 0.80 s, under 1.25 s: the watermark is read less surely" in capsys.readouterr().out


def test_a_prompt_in_no_attested_corpus_is_refused_with_what_to_do(tmp_path, clips, capsys, tiny_model):
    """The refusal names the flag for an enrolled or the demo voice, and the command that attests a corpus."""
    wav, sr = sf.read(clips[0].path)
    sf.write(tmp_path / "mine.wav", wav[::-1].copy(), sr)   # a recording nobody attested
    rc = main(["synthesize", "--model", str(tiny_model[0]), "--prompt", str(tmp_path / "mine.wav"), "--prompt-text",
               "x", "--text", "hello", "--out", str(tmp_path / "out.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and "is in no attested research corpus: speak in an enrolled voice (--voice: an id from " \
        "`valle2 voice list`, or 'demo', the shipped demo voice)" in err and "`valle2 corpus attest --name" in err
