"""Benchmark: what the scheduled-sampling variants of ``--replace-pool model`` cost per training step.

One process, one model, the same batches, every variant interleaved step by step (A B C ... A B C ...) so
load from other processes hits all alike. A step is fairseq's ``task.train_step`` (criterion forward +
backward) plus an SGD step. All model-pool variants run at p_s = 1 (p_t = 0.3), so every step pays the guess
pass; printed are median step times and their ratios to a plain ``translation`` step (issue 19's goals:
every variant <= 1.40x, the imitation KL on top <= 1.45x).

Usage: OMP_NUM_THREADS=1 python bench/bench_ss_variants.py [--steps 40] [--threads 1]
"""
import argparse
import statistics
from argparse import Namespace

import torch
from bench_replacement import make_batches, make_dictionary
from bench_ss_lazy import interleaved
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq.models.transformer import TransformerModel, base_architecture
from fairseq.tasks.translation import TranslationConfig, TranslationTask

import fairseq_eb  # noqa: F401  (registers the task and criterion, applies shims)
from fairseq_eb.tasks.translation_with_replacement import (
    TranslationWithReplacementConfig,
    TranslationWithReplacementTask,
)

VARIANTS = {
    "model pool": {},
    "confidence 0.9": {"replace_confidence_threshold": 0.9},
    "confidence 0.9 + random above 0.95": {"replace_confidence_threshold": 0.9, "replace_random_above": 0.95},
    "position exponential": {"replace_position_schedule": "exponential"},
    "position sigmoid": {"replace_position_schedule": "sigmoid"},
    "position linear": {"replace_position_schedule": "linear"},
    "imitation 1": {"replace_imitation_weight": 1.0},
    "all: conf + random + position exp + imitation": {
        "replace_confidence_threshold": 0.9, "replace_random_above": 0.95,
        "replace_position_schedule": "exponential", "replace_imitation_weight": 1.0},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40, help="steps per variant (the first 4 are dropped)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--bsz", type=int, default=32)
    ap.add_argument("--tgt-len", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    d = make_dictionary(8000)
    common = dict(data="unused", source_lang="src", target_lang="tgt", dataset_impl="mmap",
                  required_seq_len_multiple=1)
    plain = TranslationTask(TranslationConfig(**common), d, d)
    tasks = {"translation": plain}
    for name, options in VARIANTS.items():
        tasks[name] = TranslationWithReplacementTask(TranslationWithReplacementConfig(
            seed=1, replace_pool="model", replace_sample_prob=1.0, replace_token_prob=0.3, **common, **options), d, d)
    margs = Namespace(arch="transformer", encoder_layers=args.layers, decoder_layers=args.layers,
                      encoder_embed_dim=args.dim, decoder_embed_dim=args.dim,
                      encoder_ffn_embed_dim=4 * args.dim, decoder_ffn_embed_dim=4 * args.dim,
                      encoder_attention_heads=4, decoder_attention_heads=4, share_all_embeddings=True,
                      max_source_positions=1024, max_target_positions=1024, dropout=0.1)
    base_architecture(margs)
    model = TransformerModel.build_model(margs, plain)
    ce = LabelSmoothedCrossEntropyCriterion(plain, sentence_avg=False, label_smoothing=0.1)
    batches = make_batches(d, 8, args.bsz, src_len=48, tgt_len=args.tgt_len)
    skip = 4
    print(f"model: transformer {args.layers}+{args.layers} layers d={args.dim}, vocab {len(d)}, dropout 0.1, "
          f"batch {args.bsz} x (src 48, tgt <={args.tgt_len}), {args.steps} interleaved steps (first {skip} "
          f"dropped), {args.threads} threads, {'cuda' if torch.cuda.is_available() else 'cpu'}")
    if torch.cuda.is_available():
        model = model.cuda()
        batches = [{**b, "net_input": {k: v.cuda() for k, v in b["net_input"].items()}, "target": b["target"].cuda()}
                   for b in batches]
    times = interleaved({name: (task, ce) for name, task in tasks.items()}, model, batches, args.steps)
    med = {name: statistics.median(v[skip:]) for name, v in times.items()}
    base = med["translation"]
    for name, value in med.items():
        print(f"{name:48s} {value * 1e3:8.1f} ms  {value / base:.3f}x")
    print(f"imitation on top of the model pool: {med['imitation 1'] / med['model pool']:.3f}x the pool step")


if __name__ == "__main__":
    main()
