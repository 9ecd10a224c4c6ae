"""The ``valle2`` command line as a whole: every argument has a help line, and the decoding flags
are DecodingOptions' fields, each reaching the options when given."""
import argparse
import dataclasses
import subprocess
import sys
import typing

import pytest

from valle2.commands import build_parser
from valle2.commands.options import add_decoding_args, decoding_options
from valle2.decoding import DecodingOptions, flag
from valle2.errors import DecodingError


def parsers(parser: argparse.ArgumentParser, name: str = "valle2"):
    """``(name, parser)`` for ``parser`` and every subcommand under it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


def test_every_command_and_argument_has_a_help_line():
    missing = []
    for name, parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{name} {a.dest}" for a in action._choices_actions if not a.help]
            elif not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"arguments without a help line: {missing}"


def test_every_decoding_option_is_a_flag_of_every_command_that_decodes():
    decoding = {flag(f.name) for f in dataclasses.fields(DecodingOptions)}
    decoders = [name for name, parser in parsers(build_parser())
                if any(a.container.title == "decoding" for a in parser._actions)]
    assert set(decoders) >= {"valle2 synthesize", "valle2 demo", "valle2 evaluate", "valle2 ablate group"}
    for name, parser in parsers(build_parser()):
        if name in decoders and name != "valle2 ablate ras":   # ablate ras sets top-p, RAS and codebook 0's source itself
            flags = {s for a in parser._actions for s in a.option_strings}
            assert decoding <= flags, f"{name} lacks {sorted(decoding - flags)}"


def other_value(f: dataclasses.Field, tp) -> tuple[list[str], object]:
    """Command-line words that set field ``f`` (annotation ``tp``) to a value other than its default, and that value."""
    optional = type(None) in typing.get_args(tp)
    base = next(a for a in typing.get_args(tp) if a is not type(None)) if optional else tp
    if base is bool:
        return [("--no-" if f.default else "--") + flag(f.name)[2:]], not f.default
    if optional and f.default is not None:
        return [flag(f.name), "none"], None
    if "choices" in f.metadata:
        value = next(c for c in f.metadata["choices"] if c != f.default)
    elif base is int:
        value = 3 if f.default is None else f.default + 1
    elif base is float:
        value = f.default / 2 if f.default else 0.5
    else:
        value = "not-" + str(f.default)
    return [flag(f.name), str(value)], value


def test_a_decoding_flag_given_reaches_decoding_options_and_the_others_keep_their_defaults():
    parser = argparse.ArgumentParser()
    add_decoding_args(parser)
    assert decoding_options(parser.parse_args([])) == DecodingOptions()
    hints = typing.get_type_hints(DecodingOptions)
    for f in dataclasses.fields(DecodingOptions):
        words, value = other_value(f, hints[f.name])
        args = parser.parse_args(words)
        if isinstance(value, str) and "choices" not in f.metadata:   # free text: taken, or refused by name
            try:
                options = decoding_options(args)
            except DecodingError as exc:
                assert f.name in str(exc)
                continue
        else:
            options = decoding_options(args)
        assert options == dataclasses.replace(DecodingOptions(), **{f.name: value}), words


def test_decoding_options_takes_command_defaults_under_the_flags_given():
    parser = argparse.ArgumentParser()
    add_decoding_args(parser, exclude=("top_p",))
    assert "--top-p" not in {s for a in parser._actions for s in a.option_strings}
    assert decoding_options(parser.parse_args(["--seed", "5"]), seed=0, top_k=4) == DecodingOptions(seed=5, top_k=4)
    with pytest.raises(ValueError, match="not DecodingOptions fields"):
        add_decoding_args(argparse.ArgumentParser(), exclude=("top_q",))


def test_python_dash_m_valle2_runs_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "valle2", "detect", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "exit status:" in proc.stdout


def test_info_shows_where_a_models_codebook_0_comes_from(tiny_model, capsys):
    import json

    from valle2.commands import main

    path, bundle, _, _ = tiny_model
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "codebook 0 from: the AR, as the paper (ar;" in out and f"group size {bundle.dims.group_size}" in out
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["code0_source"] == "ar" and info["dims"] == bundle.dims.to_dict() and info["meta"]["recipe"] == "tiny"
    assert info["parameters"]["ar"] == sum(p.numel() for p in bundle.ar.parameters()) and info["parameters"]["code0"] == 0
    assert main(["info", str(path.parent / "missing.pt")]) == 2
    assert "valle2 info: error: model file not found" in capsys.readouterr().err


def test_errors_under_the_command_line_name_flags_not_python_arguments(tiny_model, clips, tmp_path, capsys):
    from valle2.commands import main
    from valle2.commands.messages import cli_message

    assert cli_message("needs the prompt's transcript (prompt_text); voice_id='demo'; top_p and nar_codebooks") == \
        "needs the prompt's transcript (--prompt-text); --voice='demo'; --top-p and --nar-codebooks"
    assert cli_message("the prompt_texts, a --prompt_text, prompt_text_x") == "the prompt_texts, a --prompt_text, prompt_text_x"
    assert cli_message("pace must be a number in 0.25..4, or 0 (the prompt's pace)") == \
        "--pace must be a number in 0.25..4, or 0 (the prompt's pace)"
    assert cli_message("speed must be between 0.25 and 4") == "--speed must be between 0.25 and 4"
    assert cli_message("text is 900 characters long, more than the limit; split it with split_sentences()") == \
        "text is 900 characters long, more than the limit; split it into sentences, and synthesize each"
    path, _, _, _ = tiny_model
    rc = main(["synthesize", "--model", str(path), "--prompt", str(clips[0].path), "--text", "hello",
               "--out", str(tmp_path / "x.wav")])   # cross mode without the prompt's transcript
    err = capsys.readouterr().err
    assert rc == 2 and "needs the prompt's transcript (--prompt-text)" in err and "prompt_text" not in err


@pytest.mark.parametrize("argv", [["synthesize", "--prompt", "p.wav", "--text", "hi", "--out"], ["demo", "--out"],
                                  ["recipe", "tiny", "--out"]])
def test_out_naming_an_existing_folder_is_a_one_line_error_before_any_work(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([*argv, str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and f"argument --out: '{tmp_path}' is a folder; --out takes a file name, such as" in err
