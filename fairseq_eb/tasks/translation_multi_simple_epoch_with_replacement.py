"""fairseq task ``translation_multi_simple_epoch_with_replacement``: multilingual fine-tuning + the replacement.

``translation_multi_simple_epoch`` (mBART-50, M2M-100 fine-tuning) puts the target-language tag in the decoder
input: with ``--decoder-langtok`` the target is ``__zh__ y1 .. yn </s>``, so the decoder input is
``</s> __zh__ y1 .. yn``; with ``--lang-tok-replacing-bos-eos`` the tag replaces the leading EOS. Protected:
every tag the base task added (``--lang-tok-style`` ``multilingual`` ``__xx__`` or ``mbart`` ``[xx]``, for every
language and ``--langtoks-specs`` spec), ``<mask>``, BOS/EOS/PAD and anything else appended to the dictionary.
Sampling over language pairs, validation and generation (the tag as prefix or BOS) are the base task's.
"""
from argparse import Namespace
from typing import List

from fairseq.data.multilingual.multilingual_utils import get_lang_tok
from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.tasks import register_task
from fairseq.tasks.translation_multi_simple_epoch import TranslationMultiSimpleEpochTask

from fairseq_eb.tasks.protected_symbols import protected_ids
from fairseq_eb.tasks.replacement_config import ReplacementConfig
from fairseq_eb.tasks.translation_with_replacement import ReplacementTaskMixin


def language_tags(args: Namespace, langs: List[str]) -> List[str]:
    """Every tag the base task's dictionaries carry (as ``augment_dictionary`` adds them), and ``<mask>``."""
    specs = getattr(args, "langtoks_specs", None) or ["main"]
    if isinstance(specs, str):
        specs = specs.split(",")
    return [get_lang_tok(lang, args.lang_tok_style, spec) for spec in specs for lang in langs] + ["<mask>"]


@register_task("translation_multi_simple_epoch_with_replacement")
class TranslationMultiSimpleEpochWithReplacementTask(ReplacementTaskMixin, TranslationMultiSimpleEpochTask):
    """Multilingual translation whose training decoder input is corrupted (docs/pretrained.md)."""

    @classmethod
    def add_args(cls, parser) -> None:
        TranslationMultiSimpleEpochTask.add_args(parser)
        gen_parser_from_dataclass(parser, ReplacementConfig())

    def __init__(self, args: Namespace, langs: List[str], dicts, training: bool):
        self.check_replacement_options(args)
        super().__init__(args, langs, dicts, training)
        self.setup_replacement(args, protected_ids(self.target_dictionary, language_tags(args, langs)))
