"""Cost per update of every method at the long regime's lengths (config `long`: ~97-piece targets), vs a plain update.

One process, one CPU thread, fairseq's own task / criterion objects built from exactly the options the recipe
trains with (config `long`'s model and each method's `method_args`), one shared model loaded from a trained
checkpoint (so that the model pool guesses and sequence-level candidates have a trained model's lengths), the
same batches of the real training split for every method, interleaved step by step (A B C ... A B C ...) so
that load from other processes hits all alike. A step is fairseq's ``task.train_step`` (the task's corruption,
the criterion's forward and backward) plus a tiny SGD step; its cost is the process CPU time (with one torch
thread it does not count time other processes take from the cores). Printed: median ms per step and the ratio
to the plain step.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_long.py --checkpoint RUN/checkpoints/checkpoint_best.pt \
        [--data data/ddtp-it] [--steps 12] [--out bench/long.json]
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

CLOCK = time.process_time
# the generation-only options of config `long` that fairseq-train alone uses (validation decoding)
_VALIDATION_ONLY = {"--eval-bleu": 0, "--eval-bleu-args": 1, "--eval-bleu-remove-bpe": 1,
                    "--best-checkpoint-metric": 1, "--maximize-best-checkpoint-metric": 0, "--patience": 1}


def training_options(cfg) -> list:
    """config `long`'s fairseq-train options without the ones only validation uses."""
    out, args, i = [], list(cfg.train_args), 0
    while i < len(args):
        skip = _VALIDATION_ONLY.get(args[i])
        if skip is None:
            out.append(args[i])
            i += 1
        else:
            i += 1 + skip
    return out


def build(data: Path, method: str, extra=()):
    """(task, criterion) of ``method`` as the recipe trains it, with fairseq's own parser."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    from fairseq_eb.recipe.configs import get_config
    from fairseq_eb.recipe.methods import method_args
    from fairseq_eb.user_dir import user_dir

    cfg = get_config("long")
    margs = method_args(method, cfg)
    if method in ("mle_more", "mrt", "rank"):  # the stage options change the schedule, not the update's work
        margs = [a for a in margs if a not in cfg.stage_args]
    argv = [str(data / "bin"), "--user-dir", user_dir(), *training_options(cfg), *margs, *extra, "--cpu", "--seed", "1"]
    ocfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(ocfg.task)
    return ocfg, task, task.build_criterion(ocfg.criterion)


class SgdStep:
    """The part of fairseq's optimizer interface that ``train_step`` uses, plus a tiny SGD step."""

    def __init__(self, model):
        self.optim = torch.optim.SGD(model.parameters(), lr=1e-6)

    def backward(self, loss):
        loss.backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "ddtp-it")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a trained `long` checkpoint (weights only)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per method (after 2 warm-up steps)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "long.json")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(1)
    import fairseq_eb

    fairseq_eb.register()
    methods = {
        "plain (baseline)": ("baseline", ()),
        "RR 0.5/0.3": ("rr", ()),
        "SS model pool, p_s = 1": ("ss", ("--replace-schedule", "constant", "--replace-sample-prob", "1.0")),
        "GP FGM": ("gp", ()),
        "GP exact": ("gp", ("--gp-method", "exact")),
        "sequence_risk K=4": ("mrt", ()),
        "sequence_risk K=8": ("mrt", ("--seq-beam", "8")),
    }
    built = {name: build(opts.data, m, extra) for name, (m, extra) in methods.items()}
    ocfg, task, _ = built["plain (baseline)"]
    model = task.build_model(ocfg.model)
    state = torch.load(opts.checkpoint, map_location="cpu", weights_only=False)["model"]
    model.load_state_dict(state)
    task.load_dataset("train")
    itr = task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=ocfg.dataset.max_tokens,
                                  max_positions=(1024, 1024), seed=1, num_workers=0).next_epoch_itr(shuffle=True)
    warmup = 2
    batches = [next(itr) for _ in range(warmup + opts.steps)]
    opt = SgdStep(model)
    times = {name: [] for name in built}
    for step, batch in enumerate(batches):
        for name, (_, t, criterion) in built.items():
            opt.optim.zero_grad(set_to_none=True)
            start = CLOCK()
            t.train_step(batch, model, criterion, opt, update_num=step)
            opt.optim.step()
            if step >= warmup:
                times[name].append(CLOCK() - start)
        print(f"step {step + 1}/{len(batches)}", file=sys.stderr, flush=True)
    base = statistics.median(times["plain (baseline)"])
    tokens = statistics.fmean(int(b["ntokens"]) for b in batches[warmup:])
    rows = [{"method": name, "ms_per_update": 1000 * statistics.median(v), "ratio": statistics.median(v) / base}
            for name, v in times.items()]
    print(f"\nconfig long (3+3 d=256, --max-tokens 4096: {tokens:.0f} target tokens per batch on average), "
          f"checkpoint {opts.checkpoint.name}; median process CPU time of {opts.steps} interleaved steps, 1 thread")
    print(f"{'method':28s} {'ms/update':>10s} {'x plain':>8s}")
    for r in rows:
        print(f"{r['method']:28s} {r['ms_per_update']:10.0f} {r['ratio']:8.2f}")
    result = {"data": str(opts.data), "checkpoint": str(opts.checkpoint), "steps": opts.steps, "warmup": warmup,
              "mean_target_tokens": tokens, "threads": 1, "torch": torch.__version__, "clock": "process_time",
              "rows": rows}
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
