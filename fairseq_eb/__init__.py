"""fairseq-eb: a fairseq ``--user-dir`` plugin against exposure bias.

Importing the package is inert (no torch, no fairseq), so the helpers (``fairseq_eb.scoring``,
``fairseq_eb.prep``, ``fairseq_eb.recipe``, the console scripts) start fast. The fairseq side, i.e. the
compatibility shims and the ``translation_with_replacement`` task and ``label_smoothed_cross_entropy_with_gp``
criterion, is set up by :func:`register`, which runs by itself when fairseq imports the package as its
``--user-dir`` (fairseq is then already imported). Python API users call ``fairseq_eb.register()``.
"""
import sys

__version__ = "0.1.0"

_REGISTERED = False


def register() -> None:
    """Apply the shims, register the task and criterion, and improve fairseq's CLI (idempotent).

    Needs torch and fairseq. Details of each shim: :mod:`fairseq_eb.compat`.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    from fairseq_eb import cli_validation, compat

    compat.apply()
    # Imported for their @register_* side effects.
    import fairseq_eb.criterions  # noqa: F401
    import fairseq_eb.tasks  # noqa: F401

    compat.complete_cli_help()
    cli_validation.install()
    _REGISTERED = True


if "fairseq" in sys.modules:  # imported by fairseq (--user-dir) or after it: behave as a plugin
    register()
