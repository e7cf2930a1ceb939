"""fairseq task ``translation_from_pretrained_bart_with_replacement``: mBART fine-tuning + the replacement.

``translation_from_pretrained_bart`` appends ``[lang]`` to every source and target and makes the target's tag the
EOS of its datasets, so the decoder input is ``[tgt_lang] (<s>) y1 .. yn </s>``: the tag first, EOS at the end
(``<s>`` with ``--prepend-bos``). The tags of ``--langs``, ``<mask>``, BOS/EOS/PAD and whatever the base task
appended to the dictionary are protected. Everything else (datasets, generation with the tag as EOS,
``--score-reference``) is the base task's.
"""
from argparse import Namespace

from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.tasks import register_task
from fairseq.tasks.translation_from_pretrained_bart import TranslationFromPretrainedBARTTask

from fairseq_eb.tasks.protected_symbols import protected_ids
from fairseq_eb.tasks.replacement_config import ReplacementConfig
from fairseq_eb.tasks.translation_with_replacement import ReplacementTaskMixin


@register_task("translation_from_pretrained_bart_with_replacement")
class TranslationFromPretrainedBARTWithReplacementTask(ReplacementTaskMixin, TranslationFromPretrainedBARTTask):
    """mBART-style translation whose training decoder input is corrupted (docs/pretrained.md)."""

    @classmethod
    def add_args(cls, parser) -> None:
        TranslationFromPretrainedBARTTask.add_args(parser)
        gen_parser_from_dataclass(parser, ReplacementConfig())

    def __init__(self, args: Namespace, src_dict, tgt_dict):
        self.check_replacement_options(args)
        # the base task reads self.args in load_dataset but, a TranslationTask, never sets it (fairseq 0.12)
        self.args = args
        super().__init__(args, src_dict, tgt_dict)
        named = [f"[{lang}]" for lang in self.langs] + ["<mask>"]
        self.setup_replacement(args, protected_ids(self.target_dictionary, named))
