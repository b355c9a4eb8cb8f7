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

