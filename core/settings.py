"""Settings read from the environment: one of a fixed set of choices."""


def choice(env, variable: str, flag: str, choices: tuple[str, ...], default: str) -> str:
    """The value of `variable` in `env` (case and surrounding spaces ignored), else `default`; ValueError, naming
    the command-line `flag`, for one that is not among `choices`."""
    value = env.get(variable, default).strip().lower()
    if value not in choices:
        raise ValueError(f"{flag} is one of {', '.join(choices)}; not {value!r}")
    return value
