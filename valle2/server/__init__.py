"""The HTTP service: an OpenAI-compatible speech endpoint, the consent protocol over HTTP, a
watermark report, and a web page, with the consent safeguards on every request.

>>> from valle2.server import KeyStore, ServerSettings, create_app
>>> keys = KeyStore(deployment.home / "api_keys.db")
>>> row, key = keys.create("my app")          # key: shown once; only its scrypt hash is stored
>>> app = create_app(model, deployment, ServerSettings(rate_limit=60), keys)

``valle2 serve --model model.pt`` runs it with uvicorn and ``valle2 keys`` manages the keys (see
:mod:`valle2.commands.serve`, :mod:`valle2.commands.keys`).
"""
from .app import create_app
from .auth import hash_key, verify_key
from .keys import KeyStore
from .settings import ServerSettings

__all__ = ["KeyStore", "ServerSettings", "create_app", "hash_key", "verify_key"]
