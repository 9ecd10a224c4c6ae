"""Options several commands share: the decoding flags, generated from :class:`DecodingOptions`'s
fields; ``--model`` (a name or a file); ``--home`` (the deployment folder); request rates.

Each field of :class:`DecodingOptions` is one flag (:func:`valle2.decoding.flag`: ``top_p`` is
``--top-p``); a bool ``ras`` is ``--ras/--no-ras``, a field that may be None also takes ``none``.
Type, choices (``metadata["choices"]``), default (the field's, or ``metadata["default"]``, what
None stands for) and help (``metadata["help"]``) come from the field, so a new field is a new
flag.  :func:`decoding_options` builds the options back from the flags the user gave; every
other field keeps its default (None: unset).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import types
import typing
from pathlib import Path

from ..decoding import DecodingOptions, flag
from ..errors import DeploymentNotFound

_DEST = "decoding_option."   # a namespace attribute prefix that no other argument uses


def _value_parser(flag: str, base: type, optional: bool, choices: tuple | None):
    """The argparse ``type`` of a field: ``base`` (one of ``choices``, where given) from the command
    line, and ``none`` for None where the field may be None; a bad value names the flag and what it takes."""
    takes = (f"one of {', '.join(map(str, choices))}" if choices else
             "an integer" if base is int else "a number" if base is float else base.__name__)
    takes += " or none" if optional else ""

    def parse(value: str):
        if optional and value.lower() == "none":
            return None
        try:
            parsed = base(value)
        except ValueError:
            parsed = None
        if parsed is None or (choices and parsed not in choices):
            raise argparse.ArgumentTypeError(f"{flag} takes {takes}, not {value!r}")
        return parsed
    return parse


def _field_type(tp) -> tuple[type, bool]:
    """``(base type, whether it may be None)`` of a resolved annotation such as ``int | None``."""
    args = typing.get_args(tp)
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        (tp,) = [a for a in args if a is not type(None)]
    return tp, optional


def add_decoding_args(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One flag per :class:`DecodingOptions` field, in an argument group of ``parser``, except the
    fields in ``exclude`` (those the command sets itself)."""
    hints = typing.get_type_hints(DecodingOptions)
    unknown = set(exclude) - set(hints)
    if unknown:
        raise ValueError(f"not DecodingOptions fields: {sorted(unknown)}")
    group = parser.add_argument_group("decoding", "valle2.DecodingOptions; a flag not given keeps its default")
    for f in dataclasses.fields(DecodingOptions):
        if f.name in exclude:
            continue
        base, optional = _field_type(hints[f.name])
        choices, name = f.metadata.get("choices"), flag(f.name)
        default = f.metadata.get("default", f.default)
        shown = ("on" if default else "off") if isinstance(default, bool) else default
        help_ = f.metadata["help"] + ("" if default is None else f" (default: {shown})")
        if base is bool:
            group.add_argument(name, dest=_DEST + f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_)
        else:
            metavar = "{" + ",".join(map(str, choices)) + "}" if choices else base.__name__.upper()
            group.add_argument(name, dest=_DEST + f.name, type=_value_parser(name, base, optional, choices),
                               default=argparse.SUPPRESS, metavar=metavar + ("|none" if optional else ""), help=help_)


def decoding_options(args: argparse.Namespace, **defaults) -> DecodingOptions:
    """The :class:`DecodingOptions` of the flags given in ``args`` (see :func:`add_decoding_args`);
    ``defaults`` replace the fields' defaults for flags not given."""
    given = {name[len(_DEST):]: value for name, value in vars(args).items() if name.startswith(_DEST)}
    return DecodingOptions(**{**defaults, **given})


def model_arg(value: str) -> Path | str:
    """``--model``: a shipped model's name (``demo``) or a path, as the model file's path
    (:func:`valle2.names.model_file`).  A value that names no file stays as given, for
    ``load_model`` to name the problem, and the known names, when the command runs."""
    from ..errors import ModelError
    from ..names import model_file

    try:
        return model_file(value)
    except ModelError:
        return value


def add_model_arg(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    """The model argument, ``--model`` (or an optional positional ``model``): a name or a file,
    default the shipped demo model."""
    from ..names import available_models

    names, more = (("model",), {"nargs": "?"}) if positional else (("--model",), {})
    parser.add_argument(*names, type=model_arg, default="demo", **more,
                        help=f"a valle2 model file, or a shipped model's name: {', '.join(available_models())} "
                             "(default: demo, the zero-shot demo model in the package)")


def add_home_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, default=None, help="deployment folder (default $VALLE2_HOME or ~/.valle2)")


def home_parent() -> argparse.ArgumentParser:
    """A parent parser with ``--home``, for the subcommands of ``voice``, ``corpus``, ``audit``, ``keys``."""
    parent = argparse.ArgumentParser(add_help=False)
    add_home_arg(parent)
    return parent


def open_deployment(args: argparse.Namespace, create: bool = False):
    """The deployment of ``--home`` / ``$VALLE2_HOME``; ``create`` only for the commands that may
    start one (a mistyped folder must not pass for a new, empty deployment)."""
    from ..safety.deployment import Deployment

    try:
        return Deployment.open(args.home, create=create)
    except DeploymentNotFound as exc:
        given = ("--home" if args.home is not None else
                 "$VALLE2_HOME" if os.environ.get("VALLE2_HOME") else "the default ~/.valle2 (no --home, no $VALLE2_HOME)")
        raise DeploymentNotFound(f"{exc} (the folder comes from {given}): check the path; `valle2 voice phrase` "
                                 "or `valle2 corpus attest` start a new deployment", exc.home) from None


RATE_UNITS = {"s": 60.0, "sec": 60.0, "min": 1.0, "m": 1.0, "h": 1 / 60, "hour": 1 / 60}


def rate_arg(value: str) -> float:
    """``--rate-limit``: ``N`` or ``N/s``, ``N/min``, ``N/h`` -> requests a minute (0: unlimited)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*([a-z]+))?\s*", value)
    if not m or (m.group(2) and m.group(2) not in RATE_UNITS):
        raise argparse.ArgumentTypeError(f"a rate is N, N/s, N/min or N/h (0: unlimited), not {value!r}")
    rate = float(m.group(1)) * RATE_UNITS[m.group(2) or "min"]
    if rate > 1e6:
        raise argparse.ArgumentTypeError(f"a rate of at most 1000000 requests a minute, not {value!r}")
    return rate


def output_file(value: str) -> Path:
    """``--out`` where it names a file to write: refused, before any work, when it is an existing folder."""
    path = Path(value)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"'{value}' is a folder; --out takes a file name, such as "
                                         f"'{path / 'out.wav'}'")
    return path
