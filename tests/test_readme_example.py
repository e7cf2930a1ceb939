"""The README's complete example runs as written, and the documents' relative links resolve.

The example block is taken from README.md and run verbatim with bash, in a folder holding the ``raw/`` files it
expects (a tiny copy task); ``TRAIN_ARGS`` only makes the model tiny and the run short, as the README offers.
"""
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLE_HEADING = "## A complete example from raw text"
TINY = ("--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32 "
        "--encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --encoder-attention-heads 2 "
        "--decoder-attention-heads 2 --max-update 20 --warmup-updates 10 --max-tokens 500 --cpu --num-workers 0 "
        "--no-epoch-checkpoints --no-progress-bar --log-format simple --seed 1")


def readme_example() -> str:
    """The first ```bash block after the example's heading."""
    text = README.read_text()
    after = text.split(EXAMPLE_HEADING, 1)[1]
    match = re.search(r"^```bash\n(.*?)^```", after, flags=re.S | re.M)
    assert match, "no bash block under the example heading"
    return match.group(1)


def write_raw(raw: Path) -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(30)]
    raw.mkdir()
    for split, n in (("train", 400), ("valid", 40), ("test", 20)):
        src, tgt = [], []
        for _ in range(n):
            words = [rng.choice(vocab) for _ in range(rng.randint(3, 10))]
            src.append(" ".join(words))
            tgt.append(" ".join(words[:4][::-1]))
        (raw / f"{split}.src").write_text("\n".join(src) + "\n")
        (raw / f"{split}.tgt").write_text("\n".join(tgt) + "\n")


def test_readme_example_runs_verbatim_from_raw_text(tmp_path):
    block = readme_example()
    for command in ("fairseq-preprocess", "fairseq-train", "--user-dir", "fairseq-generate"):
        assert command in block, command
    write_raw(tmp_path / "raw")
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), TRAIN_ARGS=TINY,
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "checkpoints" / "checkpoint_best.pt").is_file()
    hyps = [line for line in (tmp_path / "gen.out").read_text().splitlines() if line.startswith("H-")]
    assert len(hyps) == 20  # every test sentence decoded
    assert "ROUGE-L" in proc.stdout or "rouge-l" in proc.stdout.lower(), proc.stdout[-2000:]


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


DOCS = sorted([README, *ROOT.glob("docs/*.md"), *ROOT.glob("examples/results/**/*.md")])


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)  # no links inside code blocks
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("<"):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", file.read_text(), flags=re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(target)
    assert not broken, broken


def test_front_pages_stay_short():
    assert len(README.read_text().splitlines()) <= 150
    assert len((ROOT / "examples" / "results" / "README.md").read_text().splitlines()) <= 250
