"""Codec backends behind one interface: ``load_codec(name)`` returns a :class:`Codec`."""
from __future__ import annotations

from ..errors import CodecError
from .base import Codec

CODECS = ("encodec", "offline")


def load_codec(name: str = "offline", **kwargs) -> Codec:
    """Return the codec called ``name``.

    - ``"encodec"``: EnCodec 24 kHz, 6 kbps, 8 x 1024, 75 Hz (the paper's).  ``pretrained=False``
      gives random weights of the same architecture.
    - ``"offline"``: valle2's own codec, trained on real speech and shipped in the package; needs
      no download.  ``path=`` loads another trained copy; ``postnet=False`` decodes with plain
      WORLD instead of through the shipped post-net.
    """
    if name == "encodec":
        from .encodec import EncodecCodec

        return EncodecCodec(**kwargs)
    if name == "offline":
        from .offline import OfflineCodec

        return OfflineCodec.load(kwargs.pop("path", None), **kwargs)
    raise CodecError(f"unknown codec '{name}': choose one of {', '.join(CODECS)}")


__all__ = ["Codec", "CODECS", "load_codec"]
