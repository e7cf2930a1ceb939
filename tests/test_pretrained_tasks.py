"""The replacement on the tasks users fine-tune pretrained models with (docs/pretrained.md).

Real fairseq data made here: a tiny mBART-style dictionary (plain words; ``[en_XX]`` already listed, as a user's
dictionary may have it) and a two-pair multilingual toy (en_XX-ro_RO, en_XX-de_DE). Checked per task: where the
base task puts its language tags in the decoder input, that protected symbols are never replaced nor drawn
(the corrupted decoder inputs of ``corrupt_sample``, every pool), and ``fairseq-train`` + ``fairseq-generate`` on
tiny ``bart_base``/``mbart_base`` models with the plugin's criteria.
"""
import random
import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch
from fairseq import options, tasks

from tests.fairseq_tools import USER_DIR, run_fairseq

BART = "translation_from_pretrained_bart_with_replacement"
MULTI = "translation_multi_simple_epoch_with_replacement"
PAIRS = (("en_XX", "ro_RO"), ("en_XX", "de_DE"))
TASK_ARGS: Dict[str, List[str]] = {
    BART: ["--task", BART, "--langs", "en_XX,ro_RO,de_DE", "-s", "en_XX", "-t", "ro_RO"],
    MULTI: ["--task", MULTI, "--lang-pairs", "en_XX-ro_RO,en_XX-de_DE", "--encoder-langtok", "src",
            "--decoder-langtok"],
}
TAGS = {BART: ["[en_XX]", "[ro_RO]", "[de_DE]", "<mask>"], MULTI: ["__en_XX__", "__ro_RO__", "__de_DE__"]}
N_TEST = 4  # test sentences per pair


def tiny(arch: str) -> List[str]:
    """A 1-layer, 32-dim BART (``bart_base``) or mBART (``mbart_base``): learned positions, shared embeddings."""
    return ["--arch", arch, "--encoder-layers", "1", "--decoder-layers", "1",
            "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
            "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
            "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
            "--layernorm-embedding", "--share-all-embeddings"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Binarised en_XX-ro_RO (target reversed) and en_XX-de_DE (copy) toys sharing one dictionary."""
    root = tmp_path_factory.mktemp("multilingual")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(20)]
    raw = root / "raw"
    raw.mkdir()
    (raw / "dict.txt").write_text("".join(f"{w} 1\n" for w in words + ["[en_XX]"]))
    for src, tgt in PAIRS:
        for split, n in (("train", 40), ("valid", 8), ("test", N_TEST)):
            lines = [[rng.choice(words) for _ in range(rng.randint(3, 7))] for _ in range(n)]
            (raw / f"{split}.{src}-{tgt}.{src}").write_text("".join(" ".join(w) + "\n" for w in lines))
            (raw / f"{split}.{src}-{tgt}.{tgt}").write_text(
                "".join(" ".join(w[::-1] if tgt == "ro_RO" else w) + "\n" for w in lines))
        run_fairseq("preprocess", [
            "--source-lang", src, "--target-lang", tgt, "--srcdict", raw / "dict.txt", "--tgtdict", raw / "dict.txt",
            *[arg for split in ("train", "valid", "test") for arg in (f"--{split}pref", raw / f"{split}.{src}-{tgt}")],
            "--destdir", root / "bin", "--workers", "1"])
    return root / "bin"


def setup(data: Path, name: str, extra: List[str] = ()) -> Tuple[object, Dict]:
    """The task as fairseq-train sets it up, and one training batch drawn from both pairs where there are two."""
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(data), "--user-dir", USER_DIR, *TASK_ARGS[name], *tiny("bart_base"),
                                                "--cpu", "--seed", "5", *extra])
    task = tasks.setup_task(args)
    task.load_dataset("train")
    dataset = task.dataset("train")
    picks = list(range(6)) + list(range(len(dataset) - 6, len(dataset)))
    return task, dataset.collater([dataset[i] for i in picks])


@pytest.mark.parametrize("name", [BART, MULTI])
def test_language_tags_sit_where_the_base_task_puts_them(data, name):
    task, sample = setup(data, name)
    d = task.target_dictionary
    protected = {d[i] for i in task.protected.tolist()}
    assert set(TAGS[name]) | {"<s>", "</s>", "<pad>"} <= protected
    assert not any(re.fullmatch(r"w\d+", s) for s in protected)
    prev = sample["net_input"]["prev_output_tokens"]
    if name == BART:  # [ro_RO] y1 .. yn </s>: the tag is the dataset's EOS, moved to the front
        assert prev[:, 0].eq(d.index("[ro_RO]")).all()
        assert prev.eq(d.eos()).sum(1).eq(1).all()
    else:  # </s> __xx__ y1 .. yn: the tag is prepended to the target
        assert prev[:, 0].eq(d.eos()).all()
        assert {d[i] for i in prev[:, 1].tolist()} == {"__ro_RO__", "__de_DE__"}


class Guesser(torch.nn.Module):
    """A stand-in model whose confident guesses cycle through protected and ordinary symbols."""

    def __init__(self, vocab: int, cycle: List[int]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.vocab, self.cycle = vocab, torch.tensor(cycle)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, **unused):
        bsz, length = prev_output_tokens.shape
        logits = torch.zeros(bsz, length, self.vocab)
        logits[:, torch.arange(length), self.cycle[torch.arange(length) % len(self.cycle)]] = 20.0
        return (logits + self.weight,)


POOL_OPTIONS = {
    "target": ["--replace-pool", "target"],
    "source_target": ["--replace-pool", "source_target"],
    "vocab": ["--replace-pool", "vocab"],
    "model": ["--replace-pool", "model", "--replace-imitation-weight", "0.5"],
    "model+random_target": ["--replace-pool", "model", "--replace-random-above", "0.9"],
    "model+random_source_target": ["--replace-pool", "model", "--replace-random-above", "0.9",
                                   "--replace-random-pool", "source_target"],
    "model+random_vocab": ["--replace-pool", "model", "--replace-confidence-threshold", "0.5",
                           "--replace-random-above", "0.9", "--replace-random-pool", "vocab"],
}


@pytest.mark.parametrize("pool", list(POOL_OPTIONS))
@pytest.mark.parametrize("name", [BART, MULTI])
def test_protected_symbols_never_replaced_nor_drawn(data, name, pool):
    task, sample = setup(data, name, ["--replace-sample-prob", "1", "--replace-token-prob", "1", *POOL_OPTIONS[pool]])
    d = task.target_dictionary
    protected = task.protected
    model = Guesser(len(d), [d.index(TAGS[name][1]), d.index("w3"), d.eos(), d.index("w7"), d.index(TAGS[name][0])])
    prev = sample["net_input"]["prev_output_tokens"]
    for update in range(3):
        out = task.corrupt_sample(sample, update, model=model).sample["net_input"]["prev_output_tokens"]
        kept = torch.isin(prev, protected)
        assert torch.equal(out[kept], prev[kept])  # never replaced
        changed = out.ne(prev)
        assert changed.any()
        assert not torch.isin(out[changed], protected).any()  # never drawn
    assert torch.equal(sample["net_input"]["prev_output_tokens"], prev)  # the batch itself is untouched


def hypotheses(stdout: str) -> List[str]:
    return sorted(re.findall(r"^H-\d+\t.*$", stdout, flags=re.M))


TRAIN_COMMON = ["--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "500", "--cpu", "--log-interval", "1",
                "--log-format", "simple", "--no-progress-bar", "--num-workers", "0", "--seed", "3",
                "--no-epoch-checkpoints", "--max-update", "3", "--replace-sample-prob", "1"]
GP = ["--criterion", "label_smoothed_cross_entropy_with_gp", "--label-smoothing", "0.1"]
RUNS = {  # task x architecture, each with another pool / variant and one of the plugin's criteria
    (BART, "mbart_base"): [*GP, "--gp-method", "exact", "--replace-pool", "model", "--replace-confidence-threshold",
                           "0.01", "--replace-imitation-weight", "0.5", "--replace-schedule", "linear",
                           "--replace-schedule-updates", "2"],
    (BART, "bart_base"): [*GP, "--gp-method", "fgm", "--replace-pool", "vocab", "--replace-position-schedule",
                          "linear", "--replace-position-constant", "3"],
    (MULTI, "bart_base"): [*GP, "--gp-method", "exact", "--gp-over", "table", "--replace-pool", "source_target"],
    (MULTI, "mbart_base"): ["--criterion", "label_smoothed_cross_entropy", "--replace-pool", "model",
                            "--replace-random-above", "0.5", "--replace-random-pool", "vocab",
                            "--replace-model-temperature", "1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name,arch", list(RUNS))
def test_train_then_generate(data, tmp_path, name, arch):
    options_ = RUNS[(name, arch)]
    train = run_fairseq("train", [data, "--user-dir", USER_DIR, *TASK_ARGS[name], *tiny(arch), *TRAIN_COMMON,
                                  *options_, "--save-dir", tmp_path])
    last = [line for line in train.stderr.splitlines() + train.stdout.splitlines() if "| train | epoch" in line][-1]
    assert float(re.search(r"\| replaced ([\d.]+)", last).group(1)) > 0
    if "label_smoothed_cross_entropy_with_gp" in options_:
        assert re.search(r"\| gp [\d.e-]+", last)
    if "--replace-imitation-weight" in options_:
        assert re.search(r"\| imitation [\d.e-]+", last)
    target = "ro_RO" if name == BART else "de_DE"
    generate = [data, "--user-dir", USER_DIR, "--path", tmp_path / "checkpoint_last.pt", "--cpu", "--beam", "2",
                "--max-tokens", "500", "--gen-subset", "test", "--max-len-b", "12"]
    ours = run_fairseq("generate", [*generate, *TASK_ARGS[name], "-s", "en_XX", "-t", target])
    assert len(hypotheses(ours.stdout)) == N_TEST
    if name == MULTI:  # the base task decodes the checkpoint exactly as ours does
        base = run_fairseq("generate", [*generate, *TASK_ARGS[name][2:], "--task", "translation_multi_simple_epoch",
                                        "-s", "en_XX", "-t", target])
        assert hypotheses(base.stdout) == hypotheses(ours.stdout)


@pytest.mark.slow
def test_sequence_risk_trains_on_bart(data, tmp_path):
    train = run_fairseq("train", [data, "--user-dir", USER_DIR, *TASK_ARGS[BART], *tiny("bart_base"), *TRAIN_COMMON,
                                  "--criterion", "sequence_risk", "--seq-beam", "2", "--seq-max-len-b", "10",
                                  "--save-dir", tmp_path])
    last = [line for line in train.stderr.splitlines() + train.stdout.splitlines() if "| train | epoch" in line][-1]
    assert re.search(r"\| seq_loss [\d.e-]+", last) and "nan" not in last


@pytest.mark.parametrize("name", [BART, MULTI])
def test_sequence_risk_candidates_start_like_the_gold_decoder_input(data, name, monkeypatch):
    from fairseq_eb.sequence import candidates as cand

    task, sample = setup(data, name, ["--criterion", "sequence_risk", "--seq-beam", "2", "--seq-max-len-b", "6",
                                      "--replace-sample-prob", "0"])
    args = task.args if hasattr(task, "args") else task.cfg
    model = task.build_model(args)
    criterion = task.build_criterion(args)
    seen = []
    original = cand.shifted
    monkeypatch.setattr(cand, "shifted", lambda *a: seen.append(original(*a)) or seen[-1])
    model.train()
    criterion(model, sample)
    prev_gold = sample["net_input"]["prev_output_tokens"]
    width = 1 if name == BART else 2  # [ro_RO] ... / </s> __xx__ ...
    expected = prev_gold[:, :width].repeat_interleave(seen[0].size(0) // prev_gold.size(0), dim=0)
    assert torch.equal(seen[0][:, :width], expected)


@pytest.mark.parametrize("name", [BART, MULTI])
def test_options_are_validated_on_the_command_line(name):
    from fairseq_eb import cli_validation

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, ["unused", "--user-dir", USER_DIR, *TASK_ARGS[name], *tiny("bart_base"),
                                                "--replace-token-prob", "0.3"], parse_known=True)[0]
    assert cli_validation.validation_errors(args) == []
    args.replace_token_prob = 1.5
    assert cli_validation.validation_errors(args) == ["--replace-token-prob must be a probability in [0, 1], got 1.5"]
    args.replace_token_prob, args.replace_model_temperature = 0.3, 1.0
    assert any("--replace-model-temperature" in w for w in cli_validation.inert_option_warnings(args))
