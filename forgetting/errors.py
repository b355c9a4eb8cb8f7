"""User-facing errors: one line, naming the key and what is allowed."""

import argparse


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2, no traceback."""


class ConfigError(UserError):
    """A config value outside its allowed range."""

    def __init__(self, key: str, value: object, allowed: str):
        self.key = key
        super().__init__(f"{key}={value!r}: {allowed}")


class DataError(UserError):
    """Missing, corrupt or unreadable data."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line (`error: ...`, exit code 2), like every
    other bad input, instead of the usage block followed by the message."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
