"""The HTTP service: an OpenAI-compatible speech endpoint, the consent protocol over HTTP, a
watermark report, and a web page, with the consent safeguards on every request.

>>> from valle2.server import ServerSettings, create_app
>>> app = create_app(model, deployment, ServerSettings(api_key_hashes=[hash_key("secret")]))

``valle2 serve --model model.pt`` runs it with uvicorn (see :mod:`valle2.server.command`).
"""
from .app import create_app
from .auth import hash_key, verify_key
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "hash_key", "verify_key"]
