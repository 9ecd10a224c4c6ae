"""Exceptions that valle2 raises for bad input; each message names the problem."""


class Valle2Error(Exception):
    """Base class for every error valle2 raises on purpose."""


class AudioError(Valle2Error, ValueError):
    """Audio that cannot be used: unreadable, empty, silent, non-finite or too long."""


class TextError(Valle2Error, ValueError):
    """Text that cannot be spoken: empty, too long, or with nothing pronounceable."""


class CodecError(Valle2Error, ValueError):
    """Codes or codec settings that do not fit the codec."""


class ModelError(Valle2Error, ValueError):
    """A checkpoint that is missing, corrupt or does not fit the request."""


class DecodingError(Valle2Error, ValueError):
    """Decoding options that are invalid, or that this model or codec cannot honour."""
