"""Benchmark: what the model pool (parallel scheduled sampling) and the lazy penalty cost per training step.

One process, one model, the same batches, every variant interleaved step by step (A B C A B C ...) so load
from other processes hits all alike. A step is fairseq's ``task.train_step`` (criterion forward + backward)
plus an SGD step.

1. ``translation`` vs ``translation_with_replacement --replace-pool model`` at p_s = 1 (p_t = 0.3): median
   step time, ratio (goal <= 1.35x), and the guess pass alone (one eval-mode no-grad forward) timed on the
   same batches, to say where the time goes.
2. ``label_smoothed_cross_entropy`` vs the gradient penalty (exact, lookups, eps 1) at ``--gp-interval 4``
   and 1: *mean* step time over a whole number of intervals (a lazy run alternates 1 penalised step with
   k - 1 plain ones), ratio (goal <= 1.35x at k = 4).

Usage: OMP_NUM_THREADS=1 python bench/bench_ss_lazy.py [--steps 40] [--threads 1]
"""
import argparse
import statistics
import time
from argparse import Namespace

import torch
from bench_replacement import make_batches, make_dictionary
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq.models.transformer import TransformerModel, base_architecture
from fairseq.tasks.translation import TranslationConfig, TranslationTask

import fairseq_eb  # noqa: F401  (registers the task and criterion, applies shims)
from fairseq_eb.criterions.label_smoothed_cross_entropy_with_gp import LabelSmoothedCrossEntropyWithGpCriterion
from fairseq_eb.model_guesses import model_guesses
from fairseq_eb.tasks.translation_with_replacement import (
    TranslationWithReplacementConfig,
    TranslationWithReplacementTask,
)


class SgdStep:
    """The pieces of fairseq's optimizer interface that train_step uses, plus a plain SGD step."""

    def __init__(self, model):
        self.optim = torch.optim.SGD(model.parameters(), lr=1e-5)

    def backward(self, loss):
        loss.backward()


def interleaved(variants, model, batches, steps: int):
    """{name: [seconds per step]}; ``variants`` maps name -> (task, criterion)."""
    opt = SgdStep(model)
    times = {name: [] for name in variants}
    for step in range(steps):
        batch = batches[step % len(batches)]
        for name, (task, criterion) in variants.items():
            opt.optim.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            task.train_step(batch, model, criterion, opt, update_num=step)
            opt.optim.step()
            times[name].append(time.perf_counter() - t0)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40, help="steps per variant (first 4 dropped; keep a multiple of 4)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--bsz", type=int, default=32)
    ap.add_argument("--only", choices=["pool", "lazy"], default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    d = make_dictionary(8000)
    common = dict(data="unused", source_lang="src", target_lang="tgt", dataset_impl="mmap",
                  required_seq_len_multiple=1)
    plain = TranslationTask(TranslationConfig(**common), d, d)
    pool = TranslationWithReplacementTask(TranslationWithReplacementConfig(
        seed=1, replace_pool="model", replace_sample_prob=1.0, replace_token_prob=0.3, **common), d, d)
    margs = Namespace(arch="transformer", encoder_layers=args.layers, decoder_layers=args.layers,
                      encoder_embed_dim=args.dim, decoder_embed_dim=args.dim,
                      encoder_ffn_embed_dim=4 * args.dim, decoder_ffn_embed_dim=4 * args.dim,
                      encoder_attention_heads=4, decoder_attention_heads=4, share_all_embeddings=True,
                      max_source_positions=1024, max_target_positions=1024, dropout=0.1)
    base_architecture(margs)
    model = TransformerModel.build_model(margs, plain)
    ce = LabelSmoothedCrossEntropyCriterion(plain, sentence_avg=False, label_smoothing=0.1)
    batches = make_batches(d, 8, args.bsz, src_len=48, tgt_len=16)
    skip = 4
    print(f"model: transformer {args.layers}+{args.layers} layers d={args.dim}, vocab {len(d)}, dropout 0.1, "
          f"batch {args.bsz} x (src 48, tgt <=16), {args.steps} interleaved steps (first {skip} dropped), "
          f"{args.threads} threads")

    if args.only in (None, "pool"):
        t = interleaved({"translation": (plain, ce), "model pool": (pool, ce)}, model, batches, args.steps)
        med = {k: statistics.median(v[skip:]) for k, v in t.items()}
        guess = []
        for i in range(args.steps - skip):
            net_input = batches[i % len(batches)]["net_input"]
            t0 = time.perf_counter()
            model_guesses(model, net_input)
            guess.append(time.perf_counter() - t0)
        g = statistics.median(guess)
        print(f"[pool] train step median: translation {med['translation'] * 1e3:.1f} ms | "
              f"model pool p_s=1 {med['model pool'] * 1e3:.1f} ms | "
              f"ratio {med['model pool'] / med['translation']:.3f}x")
        print(f"[pool] guess pass alone (eval, no grad) median {g * 1e3:.1f} ms = "
              f"{100 * g / med['translation']:.1f}% of the plain step; rest of the difference "
              f"{(med['model pool'] - med['translation'] - g) * 1e3:.1f} ms")

    if args.only in (None, "lazy"):
        lazy4 = LabelSmoothedCrossEntropyWithGpCriterion(plain, False, 0.1, gp_epsilon=1.0, gp_interval=4)
        every = LabelSmoothedCrossEntropyWithGpCriterion(plain, False, 0.1, gp_epsilon=1.0)
        t = interleaved({"label_smoothed_cross_entropy": (plain, ce), "gp exact --gp-interval 4": (plain, lazy4),
                         "gp exact --gp-interval 1": (plain, every)}, model, batches, args.steps)
        mean = {k: statistics.fmean(v[skip:]) for k, v in t.items()}
        base = mean["label_smoothed_cross_entropy"]
        print("[lazy] mean step time over " + str(args.steps - skip) + " steps: " + " | ".join(
            f"{k} {v * 1e3:.1f} ms ({v / base:.3f}x)" for k, v in mean.items()))
        base_med = statistics.median(t["label_smoothed_cross_entropy"][skip:])
        every_med = statistics.median(t["gp exact --gp-interval 1"][skip:])
        pen = statistics.median(t["gp exact --gp-interval 4"][skip::4])
        rest = statistics.median([x for i, x in enumerate(t["gp exact --gp-interval 4"][skip:]) if i % 4])
        print(f"[lazy] medians: baseline {base_med * 1e3:.1f} ms | --gp-interval 1 {every_med * 1e3:.1f} ms "
              f"({every_med / base_med:.3f}x) | --gp-interval 4: penalised steps {pen * 1e3:.1f} ms "
              f"({pen / base_med:.3f}x), plain steps {rest * 1e3:.1f} ms ({rest / base_med:.3f}x), "
              f"mean of one interval (pen + 3 plain)/4 = {(pen + 3 * rest) / 4 / base_med:.3f}x")

if __name__ == "__main__":
    main()
