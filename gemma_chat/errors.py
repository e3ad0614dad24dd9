"""The package's exceptions. Imports only wording.py, so every module can raise them.

Domain code raises these; the edges (CLI, UI) translate them into one friendly line.
`GemmaChatError.message` is always safe to show to the user who caused it.
"""

from .wording import Message, render


class GemmaChatError(Exception):
    """Base for every error the app expects and can explain to a user.

    Raised with an English template and its parameters, `ValidationError("A note is at most {n}
    characters.", n=500)`: str(error) is the English text; the UI looks the template up in its
    translations (ui/text.py) and fills in the same parameters.
    """

    def __init__(self, template: str = "", **params):
        super().__init__(template)
        self.template = template
        self.params = params

    def __str__(self) -> str:
        return render(self.template, self.params)

    @property
    def message(self) -> Message:
        return Message(self.template, **self.params)


# What the user sees of an unexpected failure: the id they can quote (the error log has the rest).
SOMETHING_WENT_WRONG = "Something went wrong (error {error_id})."


class ConfigError(GemmaChatError):
    """A settings file, env var or command-line value is invalid."""


# --- accounts ---------------------------------------------------------------


class ValidationError(GemmaChatError):
    """User input does not meet a rule (length, characters, range); the text says which."""


class UsernameTakenError(GemmaChatError):
    pass


class LoginError(GemmaChatError):
    """Wrong username or password: deliberately one message for both."""


class AccountLockedError(LoginError):
    def __init__(self, template: str, *, retry_at, **params):
        super().__init__(template, **params)
        self.retry_at = retry_at


class AccountDisabledError(LoginError):
    pass


class ThrottledError(GemmaChatError):
    """Too many attempts (sign-in, registration) or too much sign-in work at once: try again later."""

    def __init__(self, template: str, *, retry_after: int, **params):
        super().__init__(template, **params)
        self.retry_after = retry_after


class UnknownUserError(GemmaChatError):
    pass


class PermissionDeniedError(GemmaChatError):
    pass


class LastAdministratorError(GemmaChatError):
    """Demoting or disabling the only enabled administrator would leave no one to administer."""


class NotLoggedInError(PermissionDeniedError):
    pass


# --- credits ------------------------------------------------------------------


class InsufficientCreditsError(GemmaChatError):
    def __init__(self, template: str, *, price: int, available: int, **params):
        super().__init__(template, price=price, available=available, **params)
        self.price = price
        self.available = available


class HoldNotFoundError(GemmaChatError):
    pass


class DatabaseRetryableError(GemmaChatError):
    """The database did not take the request, nothing of it was written, and the same request can
    succeed later without anyone's help: the kinds below. store/db.py's transaction() raises them."""


class DatabaseBusyError(DatabaseRetryableError):
    """SQLite stayed locked longer than the busy timeout (PostgreSQL: a row lock past lock_timeout); nothing was written."""

    def __init__(self, template: str = "The database is busy; nothing was changed. Please try again.", **params):
        super().__init__(template, **params)


class DatabaseFullError(DatabaseRetryableError):
    """The disk under the database is full (SQLITE_FULL, PostgreSQL disk_full); nothing was written.
    Reads still work; writes work again once there is space."""

    def __init__(self, template: str = "The server's disk is full; nothing was changed. Please try again later.", **params):
        super().__init__(template, **params)


class DatabaseDisconnectedError(DatabaseRetryableError):
    """The connection to the database server was lost or refused (a restart, a failover); the
    transaction was rolled back by the server. The next statement connects again."""

    def __init__(self, template: str = "The database could not be reached; nothing was changed. Please try again.", **params):
        super().__init__(template, **params)


class DatabaseUnavailableError(GemmaChatError):
    """The database cannot be opened: a PostgreSQL server that does not answer or refuses us, an unwritable file."""


class DatabaseRefusedError(GemmaChatError):
    """The database refused a statement (a schema it cannot create, a row it will not take); the
    text is the engine's first line of why, for the caller to put in its own message."""


# --- models -----------------------------------------------------------------


class ModelError(GemmaChatError):
    """Base for model failures; `detail` keeps llama.cpp's original text for the error log."""

    def __init__(self, template: str, *, detail: str = "", **params):
        super().__init__(template, **params)
        self.detail = detail


class ModelUnavailableError(ModelError):
    pass


class ModelFileError(ModelError):
    """A GGUF file is missing, unreadable, corrupt, or of the wrong quantization."""


class ContextTooLongError(ModelError):
    pass


class GenerationError(ModelError):
    pass


class WorkerCrashedError(GenerationError):
    """The tier's worker process died mid-answer (a native fault, an abort, a kill); `detail` says how."""


class QueueFullError(GemmaChatError):
    pass


class DownloadError(GemmaChatError):
    pass
