"""Tiny console entry points that are not tied to one sub-module."""
import os


def user_dir() -> str:
    """The directory to pass to fairseq's ``--user-dir`` (wherever pip put this package)."""
    return os.path.dirname(os.path.abspath(__file__))


def print_user_dir() -> None:
    """``fairseq-eb-user-dir``: print the ``--user-dir`` value, for ``--user-dir $(fairseq-eb-user-dir)``."""
    print(user_dir())
