"""Benchmark: whole-process wall time of the console scripts (start-up included).

``fairseq-eb-score`` on N hypothesis/reference pairs, ``--tokenize word`` and ``--tokenize char``, and
``fairseq-eb-user-dir``. Each command runs as a fresh process, ``--repeats`` times; the median is
reported. ``--root DIR`` puts that checkout first on ``PYTHONPATH`` (e.g. the main checkout, for the
numbers before a change); the default is this checkout. Goals: score < 2 s per mode, user-dir < 0.3 s.

Usage: python bench/bench_startup.py [--pairs 10000] [--repeats 5] [--root DIR]
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
WORDS = [f"w{i}" for i in range(2000)]
CJK = [chr(0x4E00 + i) for i in range(3000)]


def write_pairs(directory: Path, n: int, mode: str, seed: int = 0) -> List[str]:
    """Hypotheses that share about half their tokens with the references (scores are neither 0 nor 100)."""
    rng = random.Random(seed)
    alphabet, sep = (WORDS, " ") if mode == "word" else (CJK, "")
    hyps, refs = [], []
    for _ in range(n):
        ref = [rng.choice(alphabet) for _ in range(rng.randint(5, 25))]
        hyp = [t if rng.random() < 0.5 else rng.choice(alphabet) for t in ref[: rng.randint(3, len(ref))]]
        refs.append(sep.join(ref))
        hyps.append(sep.join(hyp))
    (directory / f"hyp.{mode}").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    (directory / f"ref.{mode}").write_text("\n".join(refs) + "\n", encoding="utf-8")
    return ["--hyp", str(directory / f"hyp.{mode}"), "--ref", str(directory / f"ref.{mode}"), "--tokenize", mode]


def command(script: str, module: str, func: str) -> List[str]:
    """The installed console script when there is one, else the same entry point through ``-c``."""
    installed = Path(sys.executable).parent / script
    if installed.exists():
        return [str(installed)]
    return [sys.executable, "-c", f"from {module} import {func}; {func}()"]


def wall(cmd: List[str], env: Dict[str, str], repeats: int, cwd: str) -> List[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=cwd)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose fairseq_eb is measured")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(args.root.resolve()), OMP_NUM_THREADS="1")
    score = command("fairseq-eb-score", "fairseq_eb.scoring.cli", "main")
    user_dir = command("fairseq-eb-user-dir", "fairseq_eb.user_dir", "print_user_dir")
    with tempfile.TemporaryDirectory() as tmp:  # also the working directory: python -c puts it on sys.path
        probe = subprocess.run([sys.executable, "-c", "import fairseq_eb; print(fairseq_eb.__file__)"], env=env,
                               capture_output=True, text=True, check=True, cwd=tmp).stdout.strip()
        print(f"fairseq_eb from {probe}; {args.repeats} runs each, median (min-max) wall seconds")
        cases = [(f"fairseq-eb-score, {args.pairs} pairs, --tokenize {mode}",
                  score + write_pairs(Path(tmp), args.pairs, mode)) for mode in ("word", "char")]
        cases.append(("fairseq-eb-user-dir", user_dir))
        for name, cmd in cases:
            times = wall(cmd, env, args.repeats, tmp)
            print(f"{name:<45} {statistics.median(times):6.2f} s  ({min(times):.2f}-{max(times):.2f})")


if __name__ == "__main__":
    main()
