"""Benchmark: what random target-token replacement costs.

1. Train-step time of fairseq's ``translation`` vs ``translation_with_replacement`` on the same model and
   the same batches, in one process. The two are interleaved step by step (A B A B ...) so machine
   load drifts hit both alike; the ratio of medians is reported. Goal: <= 1.01x.
2. The vectorised corruption function vs a literal per-token Python loop like the reference's data
   generator, on the same sentences: speed-up ratio.

Usage: python bench/bench_replacement.py [--steps 30] [--threads 2]
"""
import argparse
import random
import statistics
import time
from argparse import Namespace

import torch
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq.data import Dictionary
from fairseq.models.transformer import TransformerModel, base_architecture
from fairseq.tasks.translation import TranslationConfig, TranslationTask

import fairseq_eb
from fairseq_eb.corruption import corrupt_decoder_input
from fairseq_eb.tasks.translation_with_replacement import (
    TranslationWithReplacementConfig,
    TranslationWithReplacementTask,
)

fairseq_eb.register()  # the shims, as under --user-dir


def make_dictionary(size: int) -> Dictionary:
    d = Dictionary()
    for i in range(size):
        d.add_symbol(f"tok{i}")
    d.finalize(padding_factor=8)
    return d


def make_batches(d: Dictionary, n: int, bsz: int, src_len: int, tgt_len: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        tgt_lengths = torch.randint(tgt_len // 2, tgt_len + 1, (bsz,), generator=g)
        width = int(tgt_lengths.max()) + 1
        target = torch.full((bsz, width), d.pad(), dtype=torch.long)
        prev = torch.full((bsz, width), d.pad(), dtype=torch.long)
        for i, length in enumerate(tgt_lengths.tolist()):
            body = torch.randint(d.nspecial, len(d), (length,), generator=g)
            target[i, : length + 1] = torch.cat([body, torch.tensor([d.eos()])])
            prev[i, : length + 1] = torch.cat([torch.tensor([d.eos()]), body])
        src = torch.randint(d.nspecial, len(d), (bsz, src_len), generator=g)
        src[:, -1] = d.eos()
        batches.append({
            "id": torch.arange(bsz), "nsentences": bsz, "ntokens": int(target.ne(d.pad()).sum()),
            "net_input": {"src_tokens": src, "src_lengths": torch.full((bsz,), src_len), "prev_output_tokens": prev},
            "target": target,
        })
    return batches


class Backward:
    """The piece of fairseq's optimizer interface train_step uses."""

    def backward(self, loss):
        loss.backward()


def time_train_steps(tasks, model, criterion, batches, steps: int):
    optim = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = {name: [] for name in tasks}
    for step in range(steps):
        batch = batches[step % len(batches)]
        for name, task in tasks.items():
            optim.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            task.train_step(batch, model, criterion, Backward(), update_num=step)
            optim.step()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts[2:]) for name, ts in times.items()}  # drop warm-up steps


def reference_loop(rows, p_s: float, p_t: float, rng: random.Random):
    """The reference generator's way: per sentence, per token, in Python."""
    out = []
    for tokens in rows:
        tokens = list(tokens)
        if rng.random() < p_s:
            pool = tokens[1:]
            for j in range(1, len(tokens)):
                if rng.random() < p_t:
                    tokens[j] = rng.choice(pool)
        out.append(tokens)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--bsz", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    d = make_dictionary(8000)
    common = dict(data="unused", source_lang="src", target_lang="tgt", dataset_impl="mmap",
                  required_seq_len_multiple=1)
    plain = TranslationTask(TranslationConfig(**common), d, d)
    replacing = TranslationWithReplacementTask(TranslationWithReplacementConfig(seed=1, **common), d, d)
    margs = Namespace(arch="transformer", encoder_layers=args.layers, decoder_layers=args.layers,
                      encoder_embed_dim=args.dim, decoder_embed_dim=args.dim,
                      encoder_ffn_embed_dim=4 * args.dim, decoder_ffn_embed_dim=4 * args.dim,
                      encoder_attention_heads=4, decoder_attention_heads=4, share_all_embeddings=True,
                      max_source_positions=1024, max_target_positions=1024, dropout=0.1)
    base_architecture(margs)
    model = TransformerModel.build_model(margs, plain)
    criterion = LabelSmoothedCrossEntropyCriterion(plain, sentence_avg=False, label_smoothing=0.1)
    batches = make_batches(d, 8, args.bsz, src_len=48, tgt_len=16)

    med = time_train_steps({"translation": plain, "translation_with_replacement": replacing},
                           model, criterion, batches, args.steps)
    ratio = med["translation_with_replacement"] / med["translation"]
    print(f"model: transformer {args.layers}+{args.layers} layers d={args.dim}, vocab {len(d)}, "
          f"batch {args.bsz} x (src 48, tgt <=16), {args.steps} interleaved steps, {args.threads} threads")
    print(f"train step median: translation {med['translation'] * 1e3:.1f} ms | "
          f"translation_with_replacement {med['translation_with_replacement'] * 1e3:.1f} ms | ratio {ratio:.3f}x")

    # the adapter's own work per training batch (seeding + copy + corruption), against the step time
    t0 = time.perf_counter()
    for i in range(200):
        replacing.corrupt_sample(batches[i % len(batches)], update_num=i)
    per_batch = (time.perf_counter() - t0) / 200
    print(f"task.corrupt_sample per batch: {per_batch * 1e3:.3f} ms = "
          f"{100 * per_batch / med['translation']:.3f}% of the plain train step")

    # corruption alone: vectorised vs per-token Python loop, same sentences
    prev = torch.cat([b["net_input"]["prev_output_tokens"] for b in batches] * 20)  # ~10k sentences
    rows = [r[r.ne(d.pad())].tolist() for r in prev]
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(5):
        corrupt_decoder_input(prev, pad=d.pad(), sample_prob=0.5, token_prob=0.3, generator=gen)
    vec = (time.perf_counter() - t0) / 5
    rng = random.Random(0)
    t0 = time.perf_counter()
    reference_loop(rows, 0.5, 0.3, rng)
    loop = time.perf_counter() - t0
    print(f"corruption of {len(rows)} sentences: vectorised {vec * 1e3:.2f} ms | per-token Python loop "
          f"{loop * 1e3:.1f} ms | speed-up {loop / vec:.0f}x")


if __name__ == "__main__":
    main()
