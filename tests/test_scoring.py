"""Scoring (docs/method.md §6): hand-worked values, nltk agreement, the fairseq-generate reader, the CLI."""
import json
import math
import random
import subprocess
import sys

import pytest

from fairseq_eb.scoring import read_generate_hypotheses, read_generate_output, score, sentence_bleu, tokenize


def approx(x):
    return pytest.approx(x, abs=1e-6)


def test_english_pair_worked_by_hand():
    # hyp "the cat sat on the mat" vs ref "the cat is on the mat" (6 words each, BP = 1):
    #   1-grams: the×2 cat on mat match, "sat" not  -> 5/6
    #   2-grams: the-cat, on-the, the-mat of 5      -> 3/5
    #   3-grams: on-the-mat of 4                    -> 1/4
    #   4-grams: none of 3, method1                 -> 0.1/3
    #   BLEU = (5/6 · 3/5 · 1/4 · 1/30)^(1/4) = (1/240)^(1/4)
    # ROUGE-1: overlap 5, P = R = 5/6; ROUGE-2: 3 of 5 both ways; ROUGE-L: LCS "the cat on the mat" = 5.
    r = score(["the cat sat on the mat"], ["The cat is on the mat"], tokenize="word")
    assert r["bleu"] == approx(100 * 240 ** -0.25)  # 25.4066
    assert r["rouge-1"] == approx(100 * 5 / 6)
    assert r["rouge-2"] == approx(60.0)
    assert r["rouge-l"] == approx(100 * 5 / 6)
    assert r["n"] == 1


def test_short_hypothesis_gets_brevity_penalty():
    # hyp "The cat" (2) vs ref "the cat sat down" (4), lower-cased:
    #   p1 = 2/2, p2 = 1/1, p3 = p4 = 0.1/max(1, 0) = 0.1; BP = exp(1 - 4/2) = e^-1
    #   BLEU = e^-1 · (0.01)^(1/4) = 0.116334
    # ROUGE-1: P = 1, R = 1/2 -> F = 2/3; ROUGE-2: P = 1, R = 1/3 -> F = 1/2; ROUGE-L = ROUGE-1.
    r = score(["The cat"], ["the cat sat down"])
    assert r["bleu"] == approx(100 * math.exp(-1) * 0.01 ** 0.25)
    assert r["rouge-1"] == approx(100 * 2 / 3)
    assert r["rouge-2"] == approx(50.0)
    assert r["rouge-l"] == approx(100 * 2 / 3)


def test_chinese_scored_per_character():
    # hyp 北京大学 (4 chars) vs ref 北京师范大学 (6 chars):
    #   p1 = 4/4; p2: 北京, 大学 of {北京, 京大, 大学} = 2/3; p3: none of 2 -> 0.1/2; p4: none of 1 -> 0.1
    #   BP = exp(1 - 6/4) = e^-0.5;  BLEU = e^-0.5 · (1 · 2/3 · 0.05 · 0.1)^(1/4) = e^-0.5 · (1/300)^(1/4)
    # ROUGE-1: P = 1, R = 4/6 -> F = 0.8; ROUGE-2: P = 2/3, R = 2/5 -> F = 0.5; ROUGE-L: LCS 北京大学 -> 0.8
    r = score(["北京大学"], ["北京师范大学"], tokenize="char")
    assert r["bleu"] == approx(100 * math.exp(-0.5) * 300 ** -0.25)  # 14.5738
    assert r["rouge-1"] == approx(80.0)
    assert r["rouge-2"] == approx(50.0)
    assert r["rouge-l"] == approx(80.0)
    # spaces are ignored, Latin letters become lower-cased characters
    assert score(["北 京 大 学"], ["北京师范大学"], tokenize="char")["rouge-1"] == approx(80.0)
    assert tokenize("MRP 参数", "char") == ["m", "r", "p", "参", "数"]


def test_chinese_does_not_vanish_in_word_mode():
    # rouge-score's own tokenizer would drop every CJK character and score 0 here.
    r = score(["北京 大学"], ["北京 大学"], tokenize="word")
    assert r["rouge-1"] == approx(100.0) and r["rouge-l"] == approx(100.0)


def test_empty_hypothesis_scores_zero_and_counts():
    r = score(["", "a b"], ["a b", "a b"], tokenize="word")
    # second pair: identical 2-word sentences: p1 = p2 = 1, p3 = p4 = 0.1, BP = 1 -> 0.01^(1/4)
    assert r["n"] == 2
    assert r["rouge-1"] == approx(50.0) and r["rouge-2"] == approx(50.0) and r["rouge-l"] == approx(50.0)
    assert r["bleu"] == approx(100 * 0.01 ** 0.25 / 2)
    only_empty = score([""], ["some reference"], tokenize="char")
    assert all(only_empty[k] == 0.0 for k in ("rouge-1", "rouge-2", "rouge-l", "bleu", "sacrebleu"))


def test_sacrebleu_is_corpus_level_with_signature():
    import sacrebleu

    hyps, refs = ["the cat sat on the mat", "a dog"], ["the cat is on the mat", "a dog barks"]
    r = score(hyps, refs)
    assert r["sacrebleu"] == approx(sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score)
    assert "tok:13a" in r["sacrebleu_signature"] and "case:lc" in r["sacrebleu_signature"]
    assert "tok:char" in score(["北京大学"], ["北京师范大学"], "char")["sacrebleu_signature"]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        score(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no hypotheses"):
        score([], [])
    with pytest.raises(ValueError, match=r"tokenize must be one of \{char, word\}"):
        score(["a"], ["a"], tokenize="bpe")


def test_sentence_bleu_matches_nltk_method1():
    from nltk.translate.bleu_score import SmoothingFunction
    from nltk.translate.bleu_score import sentence_bleu as nltk_bleu

    smooth = SmoothingFunction().method1
    rng = random.Random(0)
    vocab = list("abcdefg") + ["北", "京"]
    checked_nonzero = 0
    for _ in range(600):
        hyp = [rng.choice(vocab) for _ in range(rng.randint(0, 12))]
        ref = [rng.choice(vocab) for _ in range(rng.randint(1, 12))]
        expected = nltk_bleu([ref], hyp, smoothing_function=smooth)
        assert sentence_bleu(hyp, ref) == pytest.approx(expected, abs=1e-6), (hyp, ref)
        checked_nonzero += expected > 0
    assert checked_nonzero > 300  # the comparison exercised real scores, not only zeros
    # and score() averages exactly these values
    hyps = ["a b c d e", "b b a", "", "g f e d c b a"]
    refs = ["a b c d f", "a b", "c", "a b c d e f g"]
    mean = sum(nltk_bleu([r.split()], h.split(), smoothing_function=smooth) for h, r in zip(hyps, refs)) / 4
    assert score(hyps, refs)["bleu"] == approx(100 * mean)


# A fairseq-generate log as it is printed (ids out of order, S/P lines, logging around it).
GENERATE_OUTPUT = """\
2026-11-25 12:00:00 | INFO | fairseq_cli.generate | loading model(s) from ckpt/checkpoint_best.pt
2026-11-25 12:00:01 | INFO | fairseq.data.data_utils | loaded 3 examples from: bin/test.src-tgt.src
S-2\t\u2581a \u2581long \u2581source
T-2\t\u2581a <<unk>> \u2581b
H-2\t-1.2041
D-2\t-1.2041
P-2\t-1.2041
S-0\t\u2581hello \u2581there \u2581world
T-0\t\u2581Hello \u2581world
H-0\t-0.1052\t\u2581hello \u2581wor ld
D-0\t-0.1052\t\u2581hello \u2581wor ld
P-0\t-0.2000 -0.1000 -0.0100 -0.1100
H-0\t-0.9000\t\u2581second \u2581best
D-0\t-0.9000\t\u2581second \u2581best
S-1\t\u2581the \u2581quick \u2581brown \u2581fox
T-1\t\u2581quick \u2581fox
H-1\t-0.5172\t\u2581quick \u2581f ox
D-1\t-0.5172\t\u2581quick \u2581f ox
P-1\t-0.3000 -0.5000 -0.7000 -0.6000
2026-11-25 12:00:02 | INFO | fairseq_cli.generate | NOTE: hypothesis and token scores are output in base 2
2026-11-25 12:00:02 | INFO | fairseq_cli.generate | Translated 3 sentences (11 tokens) in 0.1s (30.00 sentences/s)
Generate test with beam=2: BLEU4 = 30.21, 66.7/50.0/33.3/0.0 (BP=1.000, ratio=1.000, syslen=6, reflen=6)
"""


def test_read_generate_output(tmp_path):
    path = tmp_path / "gen.out"
    path.write_text(GENERATE_OUTPUT, encoding="utf-8")
    hyps, refs = read_generate_output(str(path))
    # sorted by id, best hypothesis of the n-best, pieces joined, empty hypothesis kept, unk -> ⁇
    assert hyps == ["hello world", "quick fox", ""]
    assert refs == ["Hello world", "quick fox", "a\u2047 b"]
    assert read_generate_hypotheses(str(path)) == {0: "hello world", 1: "quick fox", 2: ""}


def test_read_generate_output_prefers_d_lines_and_keeps_detokenised_text(tmp_path):
    # With --bpe sentencepiece, fairseq decodes D and T but not H: D/T are the matched pair.
    path = tmp_path / "gen.out"
    path.write_text("T-0\tHello world\nH-0\t-0.1\t\u2581hello \u2581wor ld\nD-0\t-0.1\thello world\n"
                    "T-1\tquick fox\nH-1\t-0.2\t\u2581quick\nD-1\t-0.2\tquick\n", encoding="utf-8")
    assert read_generate_output(str(path)) == (["hello world", "quick"], ["Hello world", "quick fox"])


def test_read_generate_output_with_sentencepiece_model(tmp_path):
    import sentencepiece as spm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["hello world", "quick brown fox", "hello fox", "world of foxes"] * 20))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "m"), vocab_size=30,
                                   hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "m.model"))
    pieces = " ".join(sp.encode("hello brown foxes", out_type=str))
    path = tmp_path / "gen.out"
    path.write_text(f"T-0\t{pieces}\nH-0\t-0.3\t{pieces}\n", encoding="utf-8")
    assert read_generate_output(str(path), spm_model=str(tmp_path / "m.model")) == (
        ["hello brown foxes"], ["hello brown foxes"])


def test_read_generate_output_errors(tmp_path):
    path = tmp_path / "not-generate.txt"
    path.write_text("just some text\n")
    with pytest.raises(ValueError, match="no T- lines"):
        read_generate_output(str(path))
    with pytest.raises(ValueError, match="no H-/D- lines"):
        read_generate_hypotheses(str(path))


def run_cli(*args):
    """The CLI in-process (a subprocess per call would import fairseq each time: seconds)."""
    import contextlib
    import io

    from fairseq_eb.scoring.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_console_script_runs_as_a_program(tmp_path):
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("the cat sat on the mat\n")
    ref = tmp_path / "ref.txt"
    ref.write_text("the cat is on the mat\n")
    proc = subprocess.run([sys.executable, "-m", "fairseq_eb.scoring.cli", "--hyp", str(hyp), "--ref", str(ref),
                           "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bleu"] == approx(100 * 240 ** -0.25)


def test_cli_json_and_table(tmp_path):
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("北京大学\n\n", encoding="utf-8")
    ref.write_text("北京师范大学\n天安门\n", encoding="utf-8")
    proc = run_cli("--hyp", hyp, "--ref", ref, "--tokenize", "char", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"rouge-1", "rouge-2", "rouge-l", "bleu", "sacrebleu", "sacrebleu_signature", "n"}
    assert result["n"] == 2 and result["rouge-1"] == approx(40.0)  # (80 + 0) / 2
    table = run_cli("--hyp", hyp, "--ref", ref, "--tokenize", "char")
    assert table.returncode == 0 and "ROUGE-L" in table.stdout and "40.00" in table.stdout

    gen = tmp_path / "gen.out"
    gen.write_text(GENERATE_OUTPUT, encoding="utf-8")
    from_gen = json.loads(run_cli("--generate-output", gen, "--json").stdout)
    assert from_gen["n"] == 3
    assert from_gen["rouge-1"] == approx(100 * (1 + 1 + 0) / 3)
    # --ref replaces the T- lines (e.g. the untouched raw test targets)
    own_ref = tmp_path / "own_ref.txt"
    own_ref.write_text("hello world\nquick fox\na b\n")
    assert json.loads(run_cli("--generate-output", gen, "--ref", own_ref, "--json").stdout)["n"] == 3


def test_cli_errors(tmp_path):
    proc = run_cli("--hyp", tmp_path / "missing.txt", "--ref", tmp_path / "missing.txt")
    assert proc.returncode == 2 and "No such file" in proc.stderr
    (tmp_path / "one.txt").write_text("a\n")
    (tmp_path / "two.txt").write_text("a\nb\n")
    proc = run_cli("--hyp", tmp_path / "one.txt", "--ref", tmp_path / "two.txt")
    assert proc.returncode == 2 and "1 hypotheses but 2 references" in proc.stderr
    proc = run_cli("--hyp", tmp_path / "one.txt")
    assert proc.returncode == 2 and "--ref" in proc.stderr


def test_cli_baseline_gives_the_paired_difference_and_its_interval(tmp_path):
    rnd = random.Random(7)
    words = "alpha beta gamma delta tool library data python".split()
    refs = [" ".join(rnd.choice(words) for _ in range(rnd.randint(2, 6))) for _ in range(300)]
    # the system copies half of each reference (a strong system), the baseline a random guess
    sys_hyps = [" ".join(r.split()[: max(1, len(r.split()) // 2)]) for r in refs]
    base_hyps = [" ".join(rnd.choice(words) for _ in range(3)) for _ in refs]
    ref, hyp, base = tmp_path / "ref.txt", tmp_path / "hyp.txt", tmp_path / "base.txt"
    ref.write_text("\n".join(refs) + "\n")
    hyp.write_text("\n".join(sys_hyps) + "\n")
    base.write_text("\n".join(base_hyps) + "\n")
    proc = run_cli("--hyp", hyp, "--ref", ref, "--baseline", base, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    expected = score(sys_hyps, refs)["rouge-l"] - score(base_hyps, refs)["rouge-l"]
    assert result["paired"]["delta_rouge_l"] == approx(expected) and expected > 10
    assert result["baseline"]["rouge-l"] == approx(score(base_hyps, refs)["rouge-l"])
    assert 0 < result["paired"]["lo"] < expected < result["paired"]["hi"] and result["paired"]["not_better"] == 0.0
    table = run_cli("--hyp", hyp, "--ref", ref, "--baseline", base)
    assert "difference: ROUGE-L +" in table.stdout and "95% interval over the 300 sentences" in table.stdout
    same = json.loads(run_cli("--hyp", hyp, "--ref", ref, "--baseline", hyp, "--json").stdout)["paired"]
    assert (same["delta_rouge_l"], same["lo"], same["hi"], same["not_better"]) == (0.0, 0.0, 0.0, 1.0)


def test_cli_baseline_must_decode_the_same_sentences(tmp_path):
    gen = tmp_path / "gen.out"
    gen.write_text(GENERATE_OUTPUT, encoding="utf-8")
    other = tmp_path / "other.out"
    other.write_text(GENERATE_OUTPUT.replace("T-1\t\u2581quick", "T-1\t\u2581slow"), encoding="utf-8")
    assert "T-1\t\u2581slow \u2581fox" in other.read_text(encoding="utf-8")
    proc = run_cli("--generate-output", gen, "--baseline", other)
    assert proc.returncode == 2 and "--baseline" in proc.stderr and "reference of sentence 1 differs" in proc.stderr
    short = tmp_path / "short.txt"
    short.write_text("a\n")
    (tmp_path / "ref.txt").write_text("a\nb\n")
    (tmp_path / "hyp.txt").write_text("a\nb\n")
    proc = run_cli("--hyp", tmp_path / "hyp.txt", "--ref", tmp_path / "ref.txt", "--baseline", short)
    assert proc.returncode == 2 and "--baseline" in proc.stderr
    assert "1 sentences, but the system scored has 2" in proc.stderr


def test_hypothesis_without_word_boundary_is_still_decoded_like_its_reference(tmp_path):
    # A degenerate model may emit only non-initial pieces; the file is still in pieces (see T).
    path = tmp_path / "gen.out"
    path.write_text("T-0\t\u2581sing ing\nH-0\t-2.0\ting ing ing\n", encoding="utf-8")
    assert read_generate_output(str(path)) == (["inginging"], ["singing"])
    assert read_generate_hypotheses(str(path)) == {0: "inginging"}


def test_rouge_matches_rouge_score_and_lcs_matches_the_table():
    from rouge_score.rouge_scorer import RougeScorer

    from fairseq_eb.scoring.rouge import lcs_length

    class Split:
        def tokenize(self, text):
            return text.split()

    rng = random.Random(5)
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=Split())
    for _ in range(300):
        hyp = " ".join(rng.choice("abcdef") for _ in range(rng.randint(0, 12)))
        ref = " ".join(rng.choice("abcdef") for _ in range(rng.randint(0, 12)))
        ours, theirs = score([hyp], [ref]), scorer.score(ref, hyp)
        for key, name in (("rouge-1", "rouge1"), ("rouge-2", "rouge2"), ("rouge-l", "rougeL")):
            assert ours[key] == approx(100 * theirs[name].fmeasure), (hyp, ref, key)
        a, b = hyp.split(), ref.split()
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]  # the textbook dynamic programme
        for i in range(len(a)):
            for j in range(len(b)):
                table[i + 1][j + 1] = table[i][j] + 1 if a[i] == b[j] else max(table[i][j + 1], table[i + 1][j])
        assert lcs_length(a, b) == table[-1][-1]
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4


def test_generate_output_with_missing_hypotheses_is_an_error(tmp_path):
    refs_only = tmp_path / "refs_only.out"
    refs_only.write_text("S-0\ta b\nT-0\ta b\nS-1\tc\nT-1\tc\n")
    with pytest.raises(ValueError, match=r"2 of 2 sentences have no hypothesis \(H-/D- line\): ids 0, 1"):
        read_generate_output(str(refs_only))
    truncated = tmp_path / "truncated.out"
    truncated.write_text("T-0\ta b\nH-0\t-1.0\ta b\nT-1\tc\nT-2\td\nH-2\t-1.0\td\nT-3\te\n")
    proc = run_cli("--generate-output", truncated)
    assert proc.returncode == 2 and "2 of 4 sentences have no hypothesis" in proc.stderr and "ids 1, 3" in proc.stderr
    ref = tmp_path / "ref.txt"
    ref.write_text("a b\nc\nd\ne\n")
    proc = run_cli("--generate-output", truncated, "--ref", ref)
    assert proc.returncode == 2 and "ids 1, 3" in proc.stderr


def test_utf8_bom_is_stripped(tmp_path):
    hyp, ref, bom_hyp, bom_ref = (tmp_path / n for n in ("h", "r", "bh", "br"))
    hyp.write_text("the cat sat\n", encoding="utf-8")
    ref.write_text("the cat sat\n", encoding="utf-8")
    bom_hyp.write_text("the cat sat\n", encoding="utf-8-sig")
    bom_ref.write_text("the cat sat\n", encoding="utf-8-sig")
    assert bom_hyp.read_bytes().startswith(b"\xef\xbb\xbf")
    plain = json.loads(run_cli("--hyp", hyp, "--ref", ref, "--json").stdout)
    assert plain["rouge-1"] == approx(100.0)
    for h, r in ((bom_hyp, ref), (hyp, bom_ref), (bom_hyp, bom_ref)):
        assert json.loads(run_cli("--hyp", h, "--ref", r, "--json").stdout) == plain
    gen = tmp_path / "gen.out"
    gen.write_bytes(b"\xef\xbb\xbfT-0\tthe cat\nH-0\t-1.0\tthe cat\n")
    assert read_generate_output(str(gen)) == (["the cat"], ["the cat"])


def test_invalid_utf8_names_file_and_line(tmp_path):
    bad = tmp_path / "hyp.txt"
    bad.write_bytes("fine\nstill fine\n\u5317\u4eac".encode("utf-8") + b" \xff\xfe\n")
    good = tmp_path / "ref.txt"
    good.write_text("a\nb\nc\n")
    proc = run_cli("--hyp", bad, "--ref", good)
    assert proc.returncode == 2
    assert f"{bad}, line 3: not valid UTF-8" in proc.stderr and "0xff" in proc.stderr
    gen = tmp_path / "gen.out"
    gen.write_bytes(b"T-0\ta\n\x80H-0\t-1\ta\n")
    proc = run_cli("--generate-output", gen)
    assert proc.returncode == 2 and f"{gen}, line 2: not valid UTF-8" in proc.stderr


def test_cjk_references_scored_by_word_get_a_warning(tmp_path):
    hyp, ref = tmp_path / "h", tmp_path / "r"
    hyp.write_text("北京大学\n天安门广场\n", encoding="utf-8")
    ref.write_text("北京师范大学\n天安门\n", encoding="utf-8")
    proc = run_cli("--hyp", hyp, "--ref", ref, "--tokenize", "word")
    assert proc.returncode == 0 and "warning: 2 of 2 references contain CJK text" in proc.stderr
    assert "--tokenize char" in proc.stderr
    assert "warning" not in run_cli("--hyp", hyp, "--ref", ref, "--tokenize", "char").stderr
    hyp.write_text("the cat\n北 京 大 学\n", encoding="utf-8")  # spaced CJK, or no CJK: no warning
    ref.write_text("the cat\n北 京 师 范 大 学\n", encoding="utf-8")
    assert "warning" not in run_cli("--hyp", hyp, "--ref", ref, "--tokenize", "word").stderr


def test_bad_spm_model_is_a_clear_error(tmp_path):
    gen = tmp_path / "gen.out"
    gen.write_text("T-0\t\u2581the \u2581cat\nH-0\t-1.0\t\u2581the \u2581cat\n", encoding="utf-8")
    proc = run_cli("--generate-output", gen, "--spm-model", tmp_path / "missing.model")
    assert proc.returncode == 2 and "--spm-model" in proc.stderr and "no such file" in proc.stderr
    not_model = tmp_path / "not.model"
    not_model.write_text("this is not a model\n")
    proc = run_cli("--generate-output", gen, "--spm-model", not_model)
    assert proc.returncode == 2 and f"--spm-model {not_model}: not a SentencePiece model" in proc.stderr
    assert "Traceback" not in proc.stderr
    plain = tmp_path / "plain.out"  # no pieces to decode: the bad model is still reported
    plain.write_text("T-0\tthe cat\nH-0\t-1.0\tthe cat\n", encoding="utf-8")
    proc = run_cli("--generate-output", plain, "--spm-model", not_model)
    assert proc.returncode == 2 and "not a SentencePiece model" in proc.stderr


def test_fast_13a_tokenizer_equals_sacrebleus():
    from sacrebleu import corpus_bleu
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a as Reference

    from fairseq_eb.scoring.sacrebleu_13a import Tokenizer13a

    rng = random.Random(3)
    alphabet = list("abcXYZ019 .,-'\"&;<>()[]{}~`@:/\\!?$%^*+=|_#\t") + ["&amp;", "&quot;", "<skipped>", "-\n", "\n",
                                                                          "é", "中", "\u00a0"]
    lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    lines += ["Hello, world. 3.14 and 1,000 - 2-3 items; (a) [b] {c}", "U.S.A. e-mail 5-year-old &amp; co."]
    ours, theirs = Tokenizer13a(), Reference()
    assert [ours(line) for line in lines] == [theirs(line) for line in lines]
    hyps = lines[:200]
    refs = lines[200:400]
    ours_score = score(hyps, refs, "word")
    assert ours_score["sacrebleu"] == approx(corpus_bleu([h.lower() for h in hyps], [[r.lower() for r in refs]]).score)
    assert "tok:13a" in ours_score["sacrebleu_signature"] and "case:lc" in ours_score["sacrebleu_signature"]


@pytest.mark.parametrize("mode", ["word", "char"])
def test_sacrebleu_from_shared_counts_equals_sacrebleus_corpus_score(mode):
    from sacrebleu.metrics import BLEU

    rng = random.Random(11)
    words = ["the", "Cat", "sat", "on", "mat,", "a", "dog.", "3.5", "x-ray", "(big)", "北京", "大学", "&amp;"]
    hyps = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(300)]
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(300)]
    expected = BLEU(tokenize="13a" if mode == "word" else "char", lowercase=True).corpus_score(hyps, [refs])
    assert score(hyps, refs, mode)["sacrebleu"] == pytest.approx(expected.score, abs=1e-9)


def test_a_longer_ref_than_the_decoded_test_set_blames_ref(tmp_path):
    """12 reference lines for a complete 10-sentence decode: --ref is wrong, not the output (issue 22)."""
    gen = tmp_path / "gen.out"
    gen.write_text("".join(f"S-{i}\ts{i}\nT-{i}\tt{i}\nH-{i}\t-1.0\th{i}\n" for i in range(10)))
    ref = tmp_path / "ref.txt"
    ref.write_text("".join(f"t{i}\n" for i in range(12)))
    proc = run_cli("--generate-output", gen, "--ref", ref)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"fairseq-eb-score: error: --ref {ref} has 12 lines, but {gen} decoded 10 "
                                   "sentences (its T- lines, each with its hypothesis); --ref needs one line per "
                                   "test sentence, in id order")
    # without T- lines nobody can tell which file is wrong: the message names both possibilities
    no_t = tmp_path / "no_t.out"
    no_t.write_text("".join(f"H-{i}\t-1.0\th{i}\n" for i in range(10)))
    proc = run_cli("--generate-output", no_t, "--ref", ref)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"fairseq-eb-score: error: --ref {ref} has 12 lines, but {no_t} has hypotheses "
                                   "for 10 sentences (no hypothesis for ids 10, 11): is --ref this test set's "
                                   "references, or is the output truncated?")
