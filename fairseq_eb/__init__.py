"""fairseq-eb: a fairseq ``--user-dir`` plugin against exposure bias.

Importing the package is inert (no torch, no fairseq), so the helpers (``fairseq_eb.scoring``,
``fairseq_eb.prep``, ``fairseq_eb.recipe``, the console scripts) start fast. The fairseq side, i.e. the
compatibility shims and the ``translation_with_replacement`` task and ``label_smoothed_cross_entropy_with_gp``
criterion, is set up by :func:`register`, which runs by itself when fairseq imports the package as its
``--user-dir`` (fairseq is then already imported), and when a fairseq-facing subpackage
(``fairseq_eb.tasks``, ``fairseq_eb.criterions``) is imported: whoever imports those uses fairseq, and
fairseq's own ``--user-dir`` import does nothing for a package that is already imported. Python API
users may also call ``fairseq_eb.register()``.
"""
import sys

__version__ = "0.1.0"

_REGISTERED = False


def register() -> None:
    """Apply the patches, register the task and criterion, and improve fairseq's CLI (idempotent).

    Needs torch and fairseq. Which patches, why, and how to switch them (``FAIRSEQ_EB_PATCHES``):
    :mod:`fairseq_eb.patches`; their code: :mod:`fairseq_eb.compat`.
    """
    global _REGISTERED
    if _REGISTERED:  # also guards the re-entry from fairseq_eb.tasks / fairseq_eb.criterions below
        return
    _REGISTERED = True
    try:
        from fairseq_eb import patches

        try:
            patches.apply("load")
        except patches.PatchSelectionError as e:  # a bad FAIRSEQ_EB_PATCHES: one line, exit 2, like a bad option
            print(f"fairseq-eb: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        # Imported for their @register_* side effects.
        import fairseq_eb.criterions  # noqa: F401
        import fairseq_eb.tasks  # noqa: F401

        patches.apply("cli")
        from fairseq_eb import crash_points

        crash_points.install_checkpoint_copy()  # the kill trials' hook: inert unless FAIRSEQ_EB_CRASH_AT is set
    except BaseException:
        _REGISTERED = False
        raise


if "fairseq" in sys.modules:  # imported by fairseq (--user-dir) or after it: behave as a plugin
    register()
