"""The sweeper's one error type: bad sweeper config or storage, printed as one `error:` line."""


class SweeperError(Exception):
    """Printed as `error: <message>` (exit code 2), no traceback. Name the key and what is
    allowed, like `hydra.sweeper.sampler='foo': choose one of tpe, random, grid, gp, cmaes`."""


def bad_value(key: str, value: object, allowed: str) -> SweeperError:
    return SweeperError(f"{key}={value!r}: {allowed}")
