"""The diagnosis itself: error-recovery curves, beam curve, search vs model errors, on any model.

:func:`diagnose_batches` works on a model object and an iterable of fairseq batches (so a hand-made
toy model can be checked against answers known in advance); :func:`run_diagnosis` is the fairseq
front end that loads a checkpoint and a data split and adds detokenised scoring.
"""
from __future__ import annotations

import os
import sys
from argparse import Namespace
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import Tensor

from fairseq_eb.corruption import corrupt_decoder_input, eligible_positions, replacement_seed
from fairseq_eb.diagnose.errors import DiagnoseError
from fairseq_eb.diagnose.recovery import (
    POSITION_BIN,
    Sums,
    measured_steps,
    own_prediction_inputs,
    select_positions,
    selection_draws,
)
from fairseq_eb.diagnose.search_errors import classify_errors, error_shares, sequence_scores

DEFAULT_RATES = (0.0, 0.1, 0.2, 0.3, 0.5)
DEFAULT_BEAMS = (1, 2, 3, 5, 8)
KINDS = ("own", "random")  # the model's own argmax mistakes; random target tokens (what replacement trains on)


def validate_options(beams: Sequence[int], rates: Sequence[float], max_sentences: Optional[int] = None,
                     ngram: int = 2, max_tokens: int = 4096) -> None:
    """Reject bad options before anything is loaded (one message naming the option and the valid range)."""
    if not beams or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in beams):
        raise DiagnoseError(f"--beams must be integers >= 1, got {list(beams)}")
    if not rates or any(not 0.0 <= float(r) <= 1.0 for r in rates):
        raise DiagnoseError(f"--corrupt-rates must be numbers in [0, 1], got {list(rates)}")
    if max_sentences is not None and max_sentences < 1:
        raise DiagnoseError(f"--max-sentences must be an integer >= 1, got {max_sentences}")
    if ngram < 1:
        raise DiagnoseError(f"--ngram must be an integer >= 1, got {ngram}")
    if max_tokens < 1:
        raise DiagnoseError(f"--max-tokens must be an integer >= 1, got {max_tokens}")


def teacher_forced_lprobs(model, sample: dict, prev_output_tokens: Optional[Tensor] = None) -> Tensor:
    """(B, T, V) float log-probabilities of one teacher-forced pass, optionally on another decoder input."""
    net_input = dict(sample["net_input"])
    if prev_output_tokens is not None:
        net_input["prev_output_tokens"] = prev_output_tokens
    return model.get_normalized_probs(model(**net_input), log_probs=True).float()


def _progress(enabled: bool, done: int, total: int) -> None:
    if enabled:
        end = "\n" if done == total else ""
        print(f"\rfairseq-eb-diagnose: batch {done}/{total}", end=end, file=sys.stderr, flush=True)


def _recovery_batch(model, sample: dict, pad: int, lprobs: Tensor, rates: Sequence[float], seed: int,
                    batch_index: int, sums: Dict, inputs_hook: Optional[Callable] = None,
                    protected: Optional[Tensor] = None) -> None:
    """Add one batch to the (kind, rate) sums; the clean pass ``lprobs`` is given. ``protected``: the task's
    structure symbols (language tags, EOS, ...), never selected, replaced nor put in place of a word."""
    prev, target = sample["net_input"]["prev_output_tokens"], sample["target"]
    nll_clean = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    pred_clean = lprobs.argmax(dim=-1)
    correct_clean = pred_clean.eq(target)
    eligible = eligible_positions(prev, pad)
    if protected is not None:
        protected = protected.to(prev.device)
        eligible = eligible & ~torch.isin(prev, protected)
    real = target.ne(pad)
    device = prev.device
    for kind_index, kind in enumerate(KINDS):
        for rate in rates:
            # the same seed for every rate: nested position sets (common random numbers across rates)
            gen = torch.Generator(device=device)
            gen.manual_seed(replacement_seed(seed, batch_index, 0, kind_index))
            if kind == "own":
                selected = select_positions(prev, pad, selection_draws(prev, gen), rate) & eligible
                corrupted = own_prediction_inputs(prev, pred_clean, selected)
                if protected is not None:  # a guessed structure symbol keeps the gold token
                    corrupted = torch.where(torch.isin(corrupted, protected), prev, corrupted)
            else:
                corrupted, selected = corrupt_decoder_input(prev, pad=pad, sample_prob=1.0, token_prob=rate,
                                                            pool="target", generator=gen, protected=protected)
            changed = corrupted.ne(prev)
            if inputs_hook is not None:
                inputs_hook(kind, rate, sample, selected, corrupted, pred_clean)
            if bool(changed.any()):
                lp = teacher_forced_lprobs(model, sample, corrupted)
                nll = -lp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
                correct = lp.argmax(dim=-1).eq(target)
            else:  # nothing changed: the pass would be the clean one
                nll, correct = nll_clean, correct_clean
            nxt, later = measured_steps(changed, target, pad)
            sums[kind, rate].add(eligible, selected, changed, {"next": nxt, "later": later, "all": real},
                                 nll, nll_clean, correct, correct_clean)


def _collate(seqs: List[Tensor], pad: int, eos: int, move_eos_to_beginning: bool) -> Tensor:
    from fairseq.data import data_utils

    return data_utils.collate_tokens(seqs, pad, eos, left_pad=False, move_eos_to_beginning=move_eos_to_beginning)


def _first_inputs(prev_output_tokens: Tensor, pad: int) -> Tensor:
    """(B, 1) each row's first decoder input (its first non-PAD token): EOS for fairseq's translation tasks,
    the target-language tag for mBART's."""
    first = prev_output_tokens.ne(pad).to(torch.uint8).argmax(dim=1, keepdim=True)
    return prev_output_tokens.gather(1, first)


def diagnose_batches(model, tgt_dict, batches: Iterable[dict], make_generator: Callable[[int], object], *,
                     rates: Sequence[float] = DEFAULT_RATES, beams: Sequence[int] = DEFAULT_BEAMS,
                     seed: int = 1, n_batches: Optional[int] = None, progress: bool = False,
                     inputs_hook: Optional[Callable] = None, protected: Optional[Tensor] = None,
                     position_bin: int = POSITION_BIN) -> Dict[str, object]:
    """Everything measured on the model itself; texts (as dictionary strings) are returned for scoring.

    Returns ``{"teacher_forced", "recovery", "search", "sentences"}``; ``sentences`` maps each id to its
    reference and per-beam hypothesis strings (``tgt_dict.string``) and token lengths.
    ``make_generator(beam)`` returns a fairseq ``SequenceGenerator``-like object (``generate([model], sample)``).
    ``inputs_hook(kind, rate, sample, selected, corrupted, predictions)`` sees every corrupted decoder input
    (for tests). ``protected`` (1-D ids, the task's structure symbols: language tags, EOS, ``<mask>``) are never
    corrupted nor scored as text, and a prefix of them every reference starts with (a multilingual task's
    target-language tag) is forced when decoding, as the task's generation does; None: the translation task's
    behaviour (BOS/PAD alone are special).
    """
    validate_options(list(beams), list(rates))
    from fairseq_eb.sequence.candidates import forced_prefix

    pad, eos = tgt_dict.pad(), tgt_dict.eos()
    not_text = None if protected is None else {int(i) for i in protected}  # left out of strings and lengths
    rates = sorted({float(r) for r in rates})
    beams = sorted(set(beams))
    generators = {b: make_generator(b) for b in beams}
    sums = {(k, r): Sums(position_bin=position_bin) for k in KINDS for r in rates}
    tf = {"nll": 0.0, "correct": 0, "ntokens": 0}
    search = {b: {"ref": [], "ref_len": [], "hyp": [], "hyp_len": [], "same": []} for b in beams}
    sentences: Dict[int, Dict[str, object]] = {}
    model.eval()
    done = 0
    with torch.no_grad():
        for batch_index, sample in enumerate(batches):
            if not sample:  # fairseq yields {} for an empty shard
                continue
            target = sample["target"]
            lprobs = teacher_forced_lprobs(model, sample)
            real = target.ne(pad)
            tok_lp = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            tf["nll"] += float(-tok_lp[real].double().sum())
            tf["correct"] += int(lprobs.argmax(-1).eq(target)[real].sum())
            tf["ntokens"] += int(real.sum())
            _recovery_batch(model, sample, pad, lprobs, rates, seed, batch_index, sums, inputs_hook, protected)
            prefix = None if protected is None else forced_prefix(target, protected)
            first_inputs = _first_inputs(sample["net_input"]["prev_output_tokens"], pad)

            ref_sum, ref_len = sequence_scores(lprobs, target, pad)
            refs = [target[i][real[i]] for i in range(target.size(0))]
            ids = [int(i) for i in sample["id"]]
            for i, sid in enumerate(ids):
                sentences[sid] = {"ref": tgt_dict.string(refs[i], extra_symbols_to_ignore=not_text), "hyps": {},
                                  "hyp_tokens": {}}
            for b in beams:
                hypos = generators[b].generate([model], sample, prefix_tokens=prefix)
                best = [h[0]["tokens"] for h in hypos]
                hyp_target = _collate(best, pad, eos, False)
                hyp_prev = _collate(best, pad, eos, True)
                hyp_prev[:, :1] = first_inputs  # the decoder input the hypothesis was decoded after
                hyp_sum, hyp_len = sequence_scores(teacher_forced_lprobs(model, sample, hyp_prev), hyp_target, pad)
                same = torch.tensor([h.numel() == r.numel() and bool(h.eq(r).all()) for h, r in zip(best, refs)])
                rec = search[b]
                rec["ref"].append(ref_sum.cpu())
                rec["ref_len"].append(ref_len.cpu())
                rec["hyp"].append(hyp_sum.cpu())
                rec["hyp_len"].append(hyp_len.cpu())
                rec["same"].append(same)
                for i, sid in enumerate(ids):
                    sentences[sid]["hyps"][b] = tgt_dict.string(best[i], extra_symbols_to_ignore=not_text)
                    words = best[i].ne(eos) if protected is None else ~torch.isin(best[i], protected.to(best[i].device))
                    sentences[sid]["hyp_tokens"][b] = int(words.sum())
            done += 1
            _progress(progress, done, n_batches or done)
    if tf["ntokens"] == 0:
        raise DiagnoseError("no sentences to diagnose (empty split, or all longer than the model's positions)")

    search_out = {}
    for b in beams:
        rec = {k: torch.cat(v) for k, v in search[b].items()}
        raw = classify_errors(rec["ref"], rec["hyp"], rec["same"])
        norm = classify_errors(rec["ref"] / rec["ref_len"], rec["hyp"] / rec["hyp_len"], rec["same"])
        search_out[b] = {"raw": error_shares(raw), "normalized": error_shares(norm),
                         "exact_match": float(rec["same"].float().mean()),
                         "mean_logprob_ref": float(rec["ref"].mean()), "mean_logprob_hyp": float(rec["hyp"].mean())}
    recovery = {k: [sums[k, r].result(r) for r in rates] for k in KINDS}
    n = tf["ntokens"]
    return {
        "teacher_forced": {"nll": tf["nll"] / n, "accuracy": tf["correct"] / n, "ntokens": n},
        "recovery": recovery,
        "search": search_out,
        "sentences": sentences,
    }


def _reference_decoder(texts: Iterable[str], spm_model: Optional[str]):
    # the recipe's detokenisation of fairseq strings (SentencePiece pieces -> text), so scores match it
    from fairseq_eb.scoring.generate_output import _decoder

    return _decoder(texts, spm_model)


def beam_curve(sentences: Dict[int, Dict[str, object]], beams: Sequence[int], refs: Dict[int, str],
               decode: Callable[[str], str], tokenize: str = "word", ngram: int = 2) -> Dict[str, object]:
    """Scores, mean length, empty share and repeated-n-gram share per beam, plus the references' own."""
    from fairseq_eb.diagnose.repetition import repeated_ngram_share
    from fairseq_eb.scoring import score
    from fairseq_eb.scoring.tokenize import tokenize as tokenize_text

    ids = sorted(sentences)
    ref_texts = [refs[i] for i in ids]
    out = {"references": {"repeat_share": repeated_ngram_share(ref_texts, ngram, tokenize),
                          "mean_len": sum(len(tokenize_text(t, tokenize)) for t in ref_texts) / len(ids)},
           "beams": {}}
    for b in beams:
        hyps = [decode(sentences[i]["hyps"][b]) for i in ids]
        out["beams"][b] = {
            "scores": score(hyps, ref_texts, tokenize),
            "mean_len": sum(len(tokenize_text(h, tokenize)) for h in hyps) / len(ids),
            "mean_len_tokens": sum(sentences[i]["hyp_tokens"][b] for i in ids) / len(ids),
            "empty_share": sum(1 for h in hyps if not h.strip()) / len(ids),
            "repeat_share": repeated_ngram_share(hyps, ngram, tokenize),
        }
    return out


def _read_refs(ref_file: str, n_sentences: int) -> List[str]:
    try:
        with open(ref_file, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f]
    except OSError as e:
        raise DiagnoseError(f"--ref-file {ref_file}: cannot read it ({e.strerror})") from e
    if len(lines) != n_sentences:
        raise DiagnoseError(f"--ref-file {ref_file} has {len(lines)} lines but the split has {n_sentences} "
                            "sentences; it must hold one reference per sentence, in id order")
    return lines


def run_diagnosis(data_bin: str, checkpoint: str, *, subset: str = "valid",
                  beams: Sequence[int] = DEFAULT_BEAMS, corrupt_rates: Sequence[float] = DEFAULT_RATES,
                  max_sentences: Optional[int] = None, max_tokens: int = 4096, batch_size: Optional[int] = None,
                  ref_file: Optional[str] = None, tokenize: str = "word", spm_model: Optional[str] = None,
                  ngram: int = 2, user_dir: Optional[str] = None, cpu: bool = False, seed: int = 1,
                  max_len_a: float = 0.0, max_len_b: int = 200, progress: bool = False,
                  position_bin: int = POSITION_BIN) -> Dict[str, object]:
    """Diagnose exposure bias of ``checkpoint`` on ``data_bin``'s ``subset``; returns the JSON-ready result.

    ``max_sentences`` bounds the work to the split's first N sentences; ``beams`` and ``corrupt_rates``
    are the beam sizes and corruption rates. References are the split's targets detokenised (with
    ``spm_model`` when given, else SentencePiece's rule when the pieces carry ``▁``) unless ``ref_file``
    gives one line per sentence of the split. Raises :class:`DiagnoseError` on bad input.
    """
    from fairseq_eb.diagnose import loader
    from fairseq_eb.scoring.tokenize import TOKENIZE_MODES

    validate_options(list(beams), list(corrupt_rates), max_sentences, ngram, max_tokens)
    if tokenize not in TOKENIZE_MODES:
        raise DiagnoseError(f"--tokenize must be one of {list(TOKENIZE_MODES)}, got {tokenize!r}")
    if spm_model is not None and not os.path.isfile(spm_model):
        raise DiagnoseError(f"--spm-model {spm_model}: no such file")
    loaded = loader.load(checkpoint, data_bin, subset, user_dir=user_dir, cpu=cpu)
    task, model = loaded.task, loaded.model
    dataset_size = len(task.dataset(subset))
    ref_lines = _read_refs(ref_file, dataset_size) if ref_file else None
    n_batches, itr = loader.batches(loaded, max_sentences, max_tokens, batch_size)
    use_cuda = loaded.device.type == "cuda"

    def on_device(batches):
        from fairseq import utils

        for sample in batches:
            yield utils.move_to_cuda(sample) if use_cuda else sample

    def make_generator(beam: int):
        # keep_inference_langtok: a multilingual task keeps the forced tag in the output (stripped from the texts
        # here), since one batch may hold several target languages
        gen_args = Namespace(beam=beam, max_len_a=max_len_a, max_len_b=max_len_b, min_len=1, lenpen=1.0,
                             unkpen=0.0, temperature=1.0, no_repeat_ngram_size=0, keep_inference_langtok=True)
        return task.build_generator([model], gen_args)

    torch.manual_seed(seed)
    measured = diagnose_batches(model, task.target_dictionary, on_device(itr), make_generator,
                                rates=corrupt_rates, beams=beams, seed=seed, n_batches=n_batches,
                                progress=progress, protected=getattr(task, "protected", None),
                                position_bin=position_bin)
    sentences = measured.pop("sentences")
    beams_sorted = sorted(set(beams))
    decode = _reference_decoder([s["ref"] for s in sentences.values()]
                                + [h for s in sentences.values() for h in s["hyps"].values()], spm_model)
    refs = {i: ref_lines[i] for i in sentences} if ref_lines else {i: decode(s["ref"]) for i, s in sentences.items()}
    curve = beam_curve(sentences, beams_sorted, refs, decode, tokenize, ngram)
    beam_rows = []
    for b in beams_sorted:
        row = {"beam": b, **curve["beams"][b], "search_vs_model": measured["search"][b]}
        beam_rows.append(row)
    return {
        "checkpoint": str(checkpoint), "data": str(data_bin), "subset": subset,
        "n_sentences": len(sentences), "n_sentences_in_split": dataset_size,
        "device": str(loaded.device),
        "options": {"beams": beams_sorted, "corrupt_rates": sorted({float(r) for r in corrupt_rates}),
                    "max_sentences": max_sentences, "tokenize": tokenize, "ngram": ngram, "seed": seed,
                    "ref_file": ref_file, "spm_model": spm_model, "max_len_a": max_len_a, "max_len_b": max_len_b,
                    "position_bin": position_bin},
        "teacher_forced": measured["teacher_forced"],
        "recovery": measured["recovery"],
        "references": curve["references"],
        "beams": beam_rows,
    }
