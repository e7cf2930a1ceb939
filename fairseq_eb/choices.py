"""The one wording of "OPTION must be one of {…}" (dependency-free, so any module can use it)."""
from typing import Iterable


def one_of(choices: Iterable[object]) -> str:
    """``{a, b, c}``: the choices as the error messages list them."""
    return "{" + ", ".join(str(c) for c in choices) + "}"


def check_choice(option: str, value: object, choices: Iterable[object]) -> None:
    """Raise ``ValueError("OPTION must be one of {…}, got VALUE")`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{option} must be one of {one_of(choices)}, got {value!r}")
