"""Is there a usable fairseq here? One line saying why not, and what to install instead.

Why: fairseq's last release (0.12.2, 2022) does not import on Python >= 3.11 (its dataclass configs have mutable
defaults, which 3.11 refuses) and ends in a 30-line dataclass traceback; ``scripts/setup.sh`` must neither show that
nor install another fairseq over a user's own. ``python -m fairseq_eb.fairseq_check`` exits 0 when fairseq imports,
1 when none is installed, 2 (with one line on stderr) when one is installed but does not import.
Importing this module imports nothing of fairseq; only :func:`problem` tries.
"""
from __future__ import annotations

import sys
from typing import Optional, Tuple

INSTEAD = ("install ve-fairseq==0.12.3 (pip uninstall fairseq first) or fairseq from a source checkout of its main "
           "branch (docs/compatibility.md)")


def distribution_of(package: str) -> Optional[Tuple[str, str]]:
    """(distribution name, version) of the installed distribution that provides the top-level ``package``."""
    from importlib import metadata

    finder = getattr(metadata, "packages_distributions", None)  # Python >= 3.10
    names = (finder() or {}).get(package, []) if finder else []
    if not names:
        for dist in metadata.distributions():
            top = (dist.read_text("top_level.txt") or "").split()
            if package in top or any(str(f).startswith(package + "/") for f in (dist.files or [])[:2000]):
                names = [dist.metadata["Name"]]
                break
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - a stale record
            continue
    return None


def explain(error: BaseException, dist: Optional[Tuple[str, str]]) -> str:
    """One line for a failed ``import fairseq``."""
    which = f"{dist[0]} {dist[1]}" if dist else "fairseq"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, ValueError) and "mutable default" in text:
        return (f"{which} does not import on Python {sys.version_info[0]}.{sys.version_info[1]}: its dataclass configs "
                f"have mutable defaults, refused since Python 3.11 (fixed after 0.12.2, never released); {INSTEAD}")
    return f"{which} is installed but does not import ({type(error).__name__}: {text[:200]}); {INSTEAD}"


def problem() -> Tuple[str, Optional[str]]:
    """("ok" | "missing" | "broken", the one-line reason when broken). Imports fairseq (and torch)."""
    try:
        import fairseq  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name == "fairseq":
            return "missing", None
        return "broken", explain(e, distribution_of("fairseq"))
    except Exception as e:
        return "broken", explain(e, distribution_of("fairseq"))
    return "ok", None


def main() -> int:
    """Exit status 0 (fairseq imports), 1 (none installed) or 2 (broken; one line on stderr)."""
    state, reason = problem()
    if state == "broken":
        print(f"fairseq-eb: error: {reason}", file=sys.stderr)
        return 2
    return 0 if state == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
