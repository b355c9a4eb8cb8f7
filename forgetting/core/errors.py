"""User-facing errors: one line, naming the key and what is allowed."""


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2, no traceback."""


class ConfigError(UserError):
    """A config value outside its allowed range."""

    def __init__(self, key: str, value: object, allowed: str):
        self.key = key
        super().__init__(f"{key}={value!r}: {allowed}")


class DataError(UserError):
    """Missing, corrupt or unreadable data."""



class Preempted(BaseException):
    """The run stopped at a step boundary after saving its checkpoint (forgetting/core/
    checkpoint.py). A BaseException, like KeyboardInterrupt, so that no `except Exception`
    records it as a failure. Here, without torch, so the entry point can catch it before
    anything trains."""

    def __init__(self, path, epoch: int, batch: int):
        self.path = path
        super().__init__(f"stopped at epoch {epoch}, batch {batch}; checkpoint {path}")
