"""Read ``fairseq-generate`` output into aligned hypothesis / reference strings.

Which lines: the hypothesis of sentence ``i`` is its first ``D-i`` line when present, else its
first ``H-i`` line (the best of ``--nbest``). ``D`` is ``H`` passed through fairseq's
``--tokenizer``/``--bpe`` decoder, the same decoding fairseq applies to ``T``, so ``D``/``T``
are a matched pair whatever flags were used (without those flags ``D`` equals ``H``).
The reference is ``T-i``. Sentences are returned sorted by id, i.e. in test-set order.

SentencePiece pieces are detected over the whole file (any ``▁`` in the hypotheses or
references used), so that a degenerate hypothesis without any ``▁`` is still decoded like its
reference: pieces are decoded with ``spm_model`` if given, else by the SentencePiece rule
(concatenate pieces, ``▁`` -> space). A file without ``▁`` is already text and left as it is. fairseq's unknown
token (``<unk>``, ``<<unk>>`` in ``T`` lines) becomes SentencePiece's ``⁇``.
"""
import itertools
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from fairseq_eb.textfile import read_lines

_LINE = re.compile(r"^([HDT])-(\d+)\t(.*)$")
_UNK = {"<unk>", "<<unk>>"}
WORD_BOUNDARY = "\u2581"


def _parse(path: str) -> Tuple[Dict[int, str], Dict[int, str]]:
    hyp_h: Dict[int, str] = {}
    hyp_d: Dict[int, str] = {}
    refs: Dict[int, str] = {}
    for line in read_lines(path):
        m = _LINE.match(line)
        if not m:
            continue  # logging, S-/P- lines, the final BLEU line
        kind, idx, rest = m.group(1), int(m.group(2)), m.group(3)
        if kind == "T":
            refs.setdefault(idx, rest)
        else:  # "score<TAB>text"; the text may be empty (and its tab stripped by an editor)
            text = rest.split("\t", 1)[1] if "\t" in rest else ""
            (hyp_d if kind == "D" else hyp_h).setdefault(idx, text)
    hyps = dict(hyp_h)
    hyps.update(hyp_d)
    return hyps, refs


def _decoder(texts: Iterable[str], spm_model: Optional[str]) -> Callable[[str], str]:
    if not any(WORD_BOUNDARY in t for t in texts):
        return lambda text: text
    if spm_model is not None:
        sp = load_spm(spm_model)
        return lambda text: sp.decode_pieces(["<unk>" if p in _UNK else p for p in text.split()])
    return lambda text: "".join("\u2047" if p in _UNK else p for p in text.split()).replace(WORD_BOUNDARY, " ").strip()


def load_spm(path: str):
    """A SentencePiece processor, or ``ValueError`` naming ``--spm-model`` when the file is missing or no model."""
    import os

    import sentencepiece as spm

    if not os.path.isfile(path):
        raise ValueError(f"--spm-model {path}: no such file")
    try:
        return spm.SentencePieceProcessor(model_file=path)
    except (OSError, RuntimeError) as e:
        reason = str(e).strip() or type(e).__name__
        raise ValueError(f"--spm-model {path}: not a SentencePiece model ({reason})") from None


def missing_ids_error(path: str, missing: Sequence[int], total: int) -> ValueError:
    """The error for sentences that have a reference but no hypothesis (a truncated or failed decode)."""
    shown = ", ".join(map(str, missing[:20])) + (", ..." if len(missing) > 20 else "")
    return ValueError(f"{path}: {len(missing)} of {total} sentences have no hypothesis (H-/D- line): ids {shown}; "
                      "is the fairseq-generate output truncated?")


def read_generate_hypotheses(path: str, spm_model: Optional[str] = None) -> Dict[int, str]:
    """Decoded hypotheses by sentence id (for scoring against a reference file of one's own)."""
    hyps, refs = _parse(path)
    if not hyps:
        raise ValueError(f"{path}: no H-/D- lines; is this fairseq-generate output?")
    decode = _decoder(itertools.chain(hyps.values(), refs.values()), spm_model)
    return {i: decode(t) for i, t in hyps.items()}


def read_generate_output(path: str, spm_model: Optional[str] = None) -> Tuple[List[str], List[str]]:
    """(hypotheses, references) in sentence-id order; every reference needs its hypothesis (else ``ValueError``)."""
    hyps, refs = _parse(path)
    if not refs:
        raise ValueError(f"{path}: no T- lines (references); is this fairseq-generate output? "
                         "Without references in it, score against a file with --ref.")
    missing = sorted(set(refs) - set(hyps))
    if missing:
        raise missing_ids_error(path, missing, len(refs))
    decode = _decoder(itertools.chain(hyps.values(), refs.values()), spm_model)
    ids = sorted(refs)
    return [decode(hyps[i]) for i in ids], [decode(refs[i]) for i in ids]
