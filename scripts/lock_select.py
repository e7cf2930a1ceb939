"""Print the entries of a hashed lock file that this environment still needs (used by scripts/setup.sh).

Why: ``pip install --require-hashes --no-deps -r LOCK`` installs exactly the locked files, but an environment the
user brings (their own torch, their own fairseq) must not have those replaced. So: entries named by ``--skip`` are
dropped, entries whose version is already installed are dropped, and with ``--keep-installed`` (an environment
setup.sh did not create) every installed package is kept whatever its version. Entries are copied verbatim, hashes
included. Standard library only: it runs before anything is installed.
"""
from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from typing import Iterator, List, Optional, Tuple


def entries(text: str) -> Iterator[Tuple[str, str, str]]:
    """(normalised name, version, the entry's text) for each ``name==version \\ --hash=...`` entry."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        found = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", lines[i])
        if not found:
            i += 1
            continue
        block = [lines[i]]
        while block[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            block.append(lines[i])
        i += 1
        yield normalise(found.group(1)), found.group(2), "\n".join(block)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def needed(text: str, skip: List[str], keep_installed: bool, only: Optional[List[str]] = None) -> List[str]:
    """The entries to install, verbatim (``only``: just these names, whatever is installed)."""
    skip = {normalise(s) for s in skip}
    out = []
    for name, version, block in entries(text):
        if only is not None:
            if name in {normalise(o) for o in only}:
                out.append(block)
            continue
        have = installed_version(name)
        if name in skip or have == version or (have is not None and keep_installed):
            continue
        out.append(block)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="lock_select.py", description=__doc__.splitlines()[0])
    parser.add_argument("lock")
    parser.add_argument("--skip", nargs="*", default=[], help="package names to leave out")
    parser.add_argument("--keep-installed", action="store_true", help="never replace an installed package")
    parser.add_argument("--only", nargs="*", default=None, help="print just these entries (e.g. setuptools)")
    args = parser.parse_args(argv)
    with open(args.lock) as f:
        blocks = needed(f.read(), args.skip, args.keep_installed, args.only)
    if blocks:
        print("\n".join(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
