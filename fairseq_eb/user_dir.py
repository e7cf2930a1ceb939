"""``fairseq-eb-user-dir``: print the value to pass to fairseq's ``--user-dir`` (no torch, no fairseq)."""
import argparse
import os
from typing import List, Optional


def user_dir() -> str:
    """The directory to pass to fairseq's ``--user-dir`` (wherever pip put this package)."""
    return os.path.dirname(os.path.abspath(__file__))


def print_user_dir(argv: Optional[List[str]] = None) -> None:
    """``fairseq-eb-user-dir``: print the ``--user-dir`` value, for ``--user-dir $(fairseq-eb-user-dir)``."""
    parser = argparse.ArgumentParser(
        prog="fairseq-eb-user-dir",
        description="Print the directory of the fairseq-eb plugin, the value for fairseq's --user-dir: "
        "fairseq-train DATA --user-dir $(fairseq-eb-user-dir) --task translation_with_replacement ...",
    )
    parser.parse_args(argv)
    print(user_dir())


if __name__ == "__main__":
    print_user_dir()
