"""Helpers to run the real fairseq command-line tools on tiny data made by the tests."""
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import List, Sequence

from fairseq_eb.user_dir import user_dir

USER_DIR = user_dir()

# A tiny transformer that trains in well under a second per update on a CPU.
TINY_MODEL: List[str] = [
    "--arch", "transformer",
    "--encoder-layers", "1", "--decoder-layers", "1",
    "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
    "--share-all-embeddings",
]
TRAIN_COMMON: List[str] = [
    "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "500",
    "--cpu", "--log-interval", "1", "--log-format", "simple", "--no-progress-bar",
    "--num-workers", "0", "--seed", "3", "--no-epoch-checkpoints",
]


def run_fairseq(tool: str, args: Sequence[str], cwd=None, check: bool = True, env=None) -> subprocess.CompletedProcess:
    """Run ``fairseq-<tool>`` as a subprocess (same interpreter) and return its completed process."""
    module = {"preprocess": "fairseq_cli.preprocess", "train": "fairseq_cli.train",
              "generate": "fairseq_cli.generate", "interactive": "fairseq_cli.interactive"}[tool]
    cmd = [sys.executable, "-m", module, *map(str, args)]
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    if env:
        full_env.update(env)
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                          input="" if tool != "interactive" else None)
    if check and proc.returncode != 0:
        raise AssertionError(f"fairseq-{tool} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def write_toy_raw(directory: Path, n_train: int = 400, seed: int = 0) -> Path:
    """Write ``directory/raw/{train,valid,test}.{src,tgt}``: target = the first four source words reversed."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(30)]
    raw = directory / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("valid", 40), ("test", 20)):
        with open(raw / f"{split}.src", "w") as fs, open(raw / f"{split}.tgt", "w") as ft:
            for _ in range(n):
                words = [rng.choice(vocab) for _ in range(rng.randint(3, 10))]
                fs.write(" ".join(words) + "\n")
                ft.write(" ".join(words[:4][::-1]) + "\n")
    return raw


def make_toy_corpus(directory: Path, n_train: int = 400, seed: int = 0) -> Path:
    """Write the toy corpus (:func:`write_toy_raw`) and binarise it."""
    raw = write_toy_raw(directory, n_train, seed)
    binary = directory / "bin"
    run_fairseq("preprocess", [
        "--source-lang", "src", "--target-lang", "tgt",
        "--trainpref", raw / "train", "--validpref", raw / "valid", "--testpref", raw / "test",
        "--destdir", binary, "--joined-dictionary", "--workers", "1",
    ])
    return binary


def torch_at_least(major: int, minor: int) -> bool:
    """Whether the installed torch is at least ``major.minor`` (the install matrix runs older ones too)."""
    import torch

    return tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) >= (major, minor)


# torch < 2.6 loads with weights_only=False by default: fairseq 0.12 then unpickles whatever a checkpoint holds, as
# upstream does, and nothing is refused; the plugin does not change that default (docs/compatibility.md)
SAFE_LOADING_BY_DEFAULT = "torch >= 2.6 (weights_only=True by default): older torch loads every pickle, as upstream"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_data_parallel_train(args: Sequence[str], world_size: int = 2, python_prelude: str = "",
                            timeout: int = 600, check: bool = True) -> List[subprocess.CompletedProcess]:
    """Run ``fairseq-train`` data-parallel on CPU: one process per rank, gloo, ``legacy_ddp`` (docs/method.md §3.6).

    ``python_prelude`` is Python code run in each rank's process before fairseq's ``cli_main`` (e.g. to
    record what the rank saw); the environment variable ``EB_RANK`` holds the rank. With ``check=False``
    failed ranks are returned rather than raised.
    """
    port = free_port()
    procs = []
    for rank in range(world_size):
        dist = ["--distributed-world-size", str(world_size), "--distributed-rank", str(rank),
                "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
                "--device-id", "0", "--distributed-backend", "gloo"]
        code = f"{python_prelude}\nfrom fairseq_cli.train import cli_main\ncli_main()\n"
        cmd = [sys.executable, "-c", code, *map(str, args), *dist]
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", EB_RANK=str(rank))
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for rank, p in enumerate(procs):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"data-parallel rank {rank} timed out after {timeout}s")
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    failed = [f"rank {rank} failed ({r.returncode}):\n{r.stdout[-1500:]}\n{r.stderr[-4000:]}"
              for rank, r in enumerate(results) if r.returncode != 0]
    if failed and check:  # report every rank: the first to fail is often not rank 0
        raise AssertionError("\n\n".join(failed))
    return results


def keep_float64_softmax(monkeypatch) -> None:
    """fairseq takes log-softmax and attention softmax in float32 even for a float64 model; keep float64 models in
    float64 (for models built after this) so comparisons with independent computations can be tight."""
    import fairseq.utils
    import torch
    import torch.nn.functional as F

    def keeping(fn):
        def wrapped(x, dim, onnx_trace=False):
            return fn(x, dim=dim, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
        return wrapped

    monkeypatch.setattr(fairseq.utils, "log_softmax", keeping(F.log_softmax))
    monkeypatch.setattr(fairseq.utils, "softmax", keeping(F.softmax))
