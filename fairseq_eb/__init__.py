"""fairseq-eb: a fairseq ``--user-dir`` plugin against exposure bias.

Importing the package applies the torch/fairseq compatibility shims and registers
the ``translation_with_replacement`` task and the ``label_smoothed_cross_entropy_with_gp`` criterion.
"""
from fairseq_eb import compat

compat.apply()

__version__ = "0.1.0"


def _register() -> None:
    # Imported for their @register_* side effects; fairseq is only needed here, so the pure
    # tensor functions (fairseq_eb.corruption, fairseq_eb.scoring) stay importable without it.
    import fairseq_eb.tasks  # noqa: F401
    import fairseq_eb.criterions  # noqa: F401


try:
    import fairseq  # noqa: F401
except ImportError:  # pragma: no cover - scoring/prep work without fairseq
    pass
else:
    _register()
    compat.complete_cli_help()
