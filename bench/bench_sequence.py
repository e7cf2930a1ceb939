"""Cost of one sequence_risk update vs a plain label_smoothed_cross_entropy update, split into its parts.

One process, one CPU thread, fairseq's task/model/criterion API (no fairseq-train, so no start-up or logging
in the numbers). Data: data/debian-ft5k-fullvalid/bin with the 2+2-layer d=128 model of config `finetune`
(--max-tokens 2048) if present, else a synthetic corpus binarised here. The model is first trained a little with
the plain loss (so it emits EOS and candidates have realistic lengths, not the length cap); its state is then
restored before each configuration, and every configuration runs on the same batches: 3 warm-up + N timed.

Parts of a sequence-level update, timed with the process CPU clock around the criterion's calls
(time.process_time: with one torch thread it does not count the time other processes take from the cores, so
the ratios hold on a busy machine):
  decode   = candidates.decode (fairseq's SequenceGenerator, eval mode, no grad)
  scoring  = costs.sequence_cost (ROUGE-L on token ids)
  training = everything else of the update: the teacher-forced forward over gold + K candidates (the encoder
             once per source for a bare transformer, its output repeated), the
             losses, backward and the Adam step.

    .venv/bin/python bench/bench_sequence.py [--batches 20] [--out bench/sequence.json]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

DEBIAN = ROOT / "data" / "debian-ft5k-fullvalid" / "bin"
CLOCK = time.process_time
MAX_LEN_B = 48  # the recipe's generation cap (_select_by_generation(48))


def synthetic_corpus(directory: Path) -> Path:
    """~3k pairs of 15-40 source words over 2k types; target = a noisy 8-16-word excerpt of the source."""
    import random

    from tests.fairseq_tools import run_fairseq

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(2000)]
    raw = directory / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 3000), ("valid", 100)):
        with open(raw / f"{split}.src", "w") as fs, open(raw / f"{split}.tgt", "w") as ft:
            for _ in range(n):
                words = [rng.choice(vocab) for _ in range(rng.randint(15, 40))]
                start = rng.randint(0, 5)
                tgt = [w if rng.random() > 0.1 else rng.choice(vocab) for w in words[start:start + rng.randint(8, 16)]]
                fs.write(" ".join(words) + "\n")
                ft.write(" ".join(tgt) + "\n")
    out = directory / "bin"
    run_fairseq("preprocess", ["--source-lang", "src", "--target-lang", "tgt", "--trainpref", raw / "train",
                               "--validpref", raw / "valid", "--destdir", out, "--joined-dictionary",
                               "--workers", "1"])
    return out


def model_args():
    from fairseq_eb.recipe.configs import _FT_MODEL

    return list(_FT_MODEL)


def config(data, criterion_args):
    """fairseq's full config (omegaconf, as fairseq-train builds it) for the model of `finetune`."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = [str(data), "--user-dir", _user_dir(), *model_args(), "--max-tokens", "2048", "--dropout", "0.1",
            "--label-smoothing", "0.1", "--cpu", "--seed", "1", *criterion_args]
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))


def build(data: Path, criterion_args):
    from fairseq import tasks

    cfg = config(data, criterion_args)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    return cfg, task


def _user_dir() -> str:
    from fairseq_eb.user_dir import user_dir

    return user_dir()


def batches(task, cfg, n: int):
    ds = task.dataset("train")
    itr = task.get_batch_iterator(dataset=ds, max_tokens=cfg.dataset.max_tokens, max_sentences=None,
                                  max_positions=(1024, 1024), seed=1, num_workers=0).next_epoch_itr(shuffle=True)
    out = []
    for sample in itr:
        out.append(sample)
        if len(out) == n:
            break
    return out


class PartTimer:
    """Wraps candidates.decode and the criterion's sequence_cost with CPU-clock accumulators."""

    def __init__(self):
        from fairseq_eb.criterions import sequence_level
        from fairseq_eb.sequence import candidates

        self.decode = self.scoring = 0.0
        orig_decode, orig_cost = candidates.decode, sequence_level.sequence_cost

        def decode(*a, **kw):
            t = CLOCK()
            try:
                return orig_decode(*a, **kw)
            finally:
                self.decode += CLOCK() - t

        def cost(*a, **kw):
            t = CLOCK()
            try:
                return orig_cost(*a, **kw)
            finally:
                self.scoring += CLOCK() - t

        candidates.decode, sequence_level.sequence_cost = decode, cost
        self._restore = lambda: (setattr(candidates, "decode", orig_decode),
                                 setattr(sequence_level, "sequence_cost", orig_cost))

    def reset(self):
        self.decode = self.scoring = 0.0

    def close(self):
        self._restore()


def step(model, criterion, optimizer, sample):
    model.train()
    optimizer.zero_grad()
    loss, sample_size, log = criterion(model, sample)
    (loss / sample_size).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return log


def run_config(name, data, task, model, state, crit_args, samples, warmup, timer):
    criterion = task.build_criterion(config(data, crit_args).criterion)
    model.load_state_dict(state)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98))
    total = decode = scoring = 0.0
    cand_len = sentences = 0.0
    for i, sample in enumerate(samples):
        criterion.num_updates = i  # what task.train_step would report (seeds of sampled candidates)
        timer.reset()
        t = CLOCK()
        log = step(model, criterion, optimizer, sample)
        elapsed = CLOCK() - t
        if i >= warmup:
            total += elapsed
            decode += timer.decode
            scoring += timer.scoring
            if "cand_len" in log:
                cand_len += float(log["cand_len"])
                sentences += float(log["nsentences"])
    n = len(samples) - warmup
    row = {"name": name, "ms_per_update": 1000 * total / n, "decode_ms": 1000 * decode / n,
           "scoring_ms": 1000 * scoring / n, "training_ms": 1000 * (total - decode - scoring) / n,
           "cand_len": cand_len / sentences if sentences else None}
    print(f"  {name}: {row['ms_per_update']:.0f} ms/update", flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="timed batches per configuration")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pretrain-updates", type=int, default=150,
                        help="plain-loss updates before timing, so candidates stop at EOS like a trained model's")
    parser.add_argument("--out", default=str(ROOT / "bench" / "sequence.json"))
    parser.add_argument("--joint", action="store_true",
                        help="force the path of a data-parallel-wrapped model: one model(...) call on the source "
                        "repeated K + 1 times, instead of the encoder once per source")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(1)
    import fairseq_eb

    fairseq_eb.register()
    if opts.joint:
        from fairseq_eb.criterions import sequence_level

        sequence_level._encoder_reusable = lambda model: False
    tmp = None
    if DEBIAN.is_dir():
        data, data_name = DEBIAN, "data/debian-ft5k-fullvalid (finetune's 2+2-layer d=128 model, --max-tokens 2048)"
    else:
        tmp = tempfile.TemporaryDirectory()
        data, data_name = synthetic_corpus(Path(tmp.name)), "synthetic corpus (2+2-layer d=128, --max-tokens 2048)"
    cfg, task = build(data, ["--criterion", "label_smoothed_cross_entropy"])
    model = task.build_model(cfg.model)
    plain = task.build_criterion(cfg.criterion)

    # a little plain training so the model's candidates end at EOS
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98))
    t = CLOCK()
    train_batches = batches(task, cfg, opts.pretrain_updates)
    while len(train_batches) < opts.pretrain_updates:
        train_batches += batches(task, cfg, opts.pretrain_updates - len(train_batches))
    for sample in train_batches:
        step(model, plain, optimizer, sample)
    print(f"{opts.pretrain_updates} plain updates to warm the model: {CLOCK() - t:.0f} s", flush=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    samples = batches(task, cfg, opts.warmup + opts.batches)

    seq = ["--seq-combined-loss-alpha", "0.5", "--seq-max-len-b", str(MAX_LEN_B)]
    configs = [
        ("label_smoothed_cross_entropy", ["--criterion", "label_smoothed_cross_entropy"]),
        ("sequence_risk beam K=4", ["--criterion", "sequence_risk", "--seq-beam", "4", *seq]),
        ("sequence_risk beam K=8", ["--criterion", "sequence_risk", "--seq-beam", "8", *seq]),
        ("sequence_risk sampling K=4", ["--criterion", "sequence_risk", "--seq-beam", "4", "--seq-sampling", *seq]),
    ]
    timer = PartTimer()
    rows = [run_config(name, data, task, model, state, crit, samples, opts.warmup, timer) for name, crit in configs]
    timer.close()
    base = rows[0]["ms_per_update"]
    for r in rows:
        r["ratio_vs_plain"] = r["ms_per_update"] / base
    tokens = sum(int(s["ntokens"]) for s in samples[opts.warmup:]) / opts.batches
    sents = sum(int(s["nsentences"]) for s in samples[opts.warmup:]) / opts.batches

    print(f"\n{data_name}; {opts.batches} batches after {opts.warmup} warm-up, mean {tokens:.0f} target tokens / "
          f"{sents:.0f} sentences per batch; torch threads 1; seq-max-len-b {MAX_LEN_B}, alpha 0.5; process CPU time; "
          f"{'joint model(...) call' if opts.joint else 'encoder once per source'}")
    header = f"{'configuration':30s} {'ms/update':>10s} {'x plain':>8s} {'decode':>8s} {'scoring':>8s} " \
             f"{'training':>9s} {'cand_len':>8s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        cl = f"{r['cand_len']:.1f}" if r["cand_len"] else "-"
        print(f"{r['name']:30s} {r['ms_per_update']:10.0f} {r['ratio_vs_plain']:8.2f} "
              f"{r['decode_ms'] / base:8.2f} {r['scoring_ms'] / base:8.2f} {r['training_ms'] / base:9.2f} {cl:>8s}")
    print("(decode / scoring / training in units of one plain update; they add up to 'x plain')")
    result = {"data": data_name, "batches": opts.batches, "warmup": opts.warmup,
              "pretrain_updates": opts.pretrain_updates, "mean_target_tokens": tokens, "mean_sentences": sents,
              "threads": 1, "seq_max_len_b": MAX_LEN_B, "alpha": 0.5, "torch": torch.__version__,
              "cpu_count": os.cpu_count(), "clock": "process_time",
              "teacher_forced_path": "joint model(...) call" if opts.joint else "encoder once per source", "rows": rows}
    Path(opts.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {opts.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
