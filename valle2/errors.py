"""Every exception valle2 raises; each message names the problem.

:class:`Valle2Error` and its subclasses are what callers catch: the CLI prints them as
``valle2 <command>: error: ...`` (exit 2) and the server returns them as JSON 4xx responses.
The two classes at the end are internal signals that never leave the module that raises them.
"""


class Valle2Error(Exception):
    """Base class for every error valle2 raises on purpose."""


# ------------------------------------------------------------------------------ input and models
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


class ConfigError(Valle2Error, ValueError):
    """A config file that cannot be read or has unknown or ill-typed keys."""


class DataError(Valle2Error, ValueError):
    """A corpus, manifest, split or prepared-data folder that cannot be used as asked."""


class BackendUnavailable(Valle2Error):
    """A metric backend (ASR, speaker encoder) whose package or weights are not available here."""


# ------------------------------------------------------------------------------------ safeguards
class ConsentError(Valle2Error):
    """A request to clone a voice that consent does not cover; the message says why."""


class DeploymentNotFound(Valle2Error):
    """A read-only open (``Deployment.open(home, create=False)``) of a folder that is not a
    deployment; ``home`` is the folder."""

    def __init__(self, message: str, home):
        super().__init__(message)
        self.home = home


class DetectorError(ModelError):
    """The detector's weights are missing, corrupt or do not fit; the message says which and how to fix it."""


class ProvenanceError(Valle2Error):
    """C2PA signing or reading failed (extra not installed, unsupported format, bad certificate files)."""


# ---------------------------------------------------------------------------------- HTTP server
class BadRequest(Valle2Error):
    """A request that is well-formed but cannot be served as asked (HTTP 400)."""


class NotFound(Valle2Error):
    """A voice or model the server does not have (HTTP 404)."""


class PermissionDenied(Valle2Error):
    """A valid key asking for what it may not do, such as key management without an admin key (HTTP 403)."""


class Busy(Valle2Error):
    """The work queue is full (HTTP 429) or closed (503); the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int, closed: bool = False):
        super().__init__(message)
        self.retry_after, self.closed = retry_after, closed


class KeyStoreError(Valle2Error):
    """A key-management request that cannot be done (unknown key, bad name or limit)."""


# ------------------------------------------------------------------------------ internal signals
class BodyTooLarge(Exception):
    """Raised inside :class:`valle2.server.limits.BodySizeLimit` when a request body passes the
    limit; caught there and answered with 413.  Not a :class:`Valle2Error`, so that the app's own
    error handlers do not answer it first."""


class StaleAuditState(Exception):
    """Raised inside :class:`valle2.safety.audit.AuditLog` when its kept state does not extend to
    the log file as it is now; caught there, which then verifies the whole log."""
