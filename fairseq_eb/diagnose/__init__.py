"""Diagnose exposure bias of a fairseq seq2seq checkpoint (``fairseq-eb-diagnose``; see ``docs/diagnose.md``).

``run_diagnosis(data_bin, checkpoint, ...)`` measures error recovery, the beam curve and search vs model
errors; ``repeated_ngram_share(texts, n)`` is the repetition share on plain strings. fairseq is only
imported when a checkpoint is loaded.
"""
from fairseq_eb.diagnose.errors import DiagnoseError
from fairseq_eb.diagnose.repetition import has_repeated_ngram, repeated_ngram_share
from fairseq_eb.diagnose.report import headline, markdown, write_report

_LAZY = {"run_diagnosis", "diagnose_batches"}


def __getattr__(name: str):
    # The runner imports torch and fairseq: loaded on first use, so that the text helpers (repetition share,
    # report) stay importable by the recipe and scoring tools without them.
    if name in _LAZY:
        from fairseq_eb.diagnose import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["run_diagnosis", "diagnose_batches", "repeated_ngram_share", "has_repeated_ngram",
           "write_report", "markdown", "headline", "DiagnoseError"]
