"""Settings read from the environment: one of a fixed set of choices, and sizes in bytes."""

import re


def choice(env, variable: str, flag: str, choices: tuple[str, ...], default: str) -> str:
    """The value of `variable` in `env` (case and surrounding spaces ignored), else `default`; ValueError, naming
    the command-line `flag`, for one that is not among `choices`."""
    value = env.get(variable, default).strip().lower()
    if value not in choices:
        raise ValueError(f"{flag} is one of {', '.join(choices)}; not {value!r}")
    return value


SIZE = re.compile(r"^(\d+)\s*([kmg]?)i?b?$")
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size(text: str) -> int:
    """A number of bytes such as 26214400, 512K, 25M, 25MiB or 1G (binary units); at least 1."""
    match = SIZE.fullmatch(text.strip().lower())
    if not match or int(match[1]) < 1:
        raise ValueError(f"{text!r} is not a size such as 25M, 512K or 1G")
    return int(match[1]) * SIZE_UNITS[match[2]]
