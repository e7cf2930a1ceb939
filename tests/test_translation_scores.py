"""Translation scores against sacreBLEU itself, and the corpus-level paired bootstrap."""
import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF

from fairseq_eb.scoring.translation import (
    DETACHED_CHRF,
    bleu_from_stats,
    chrf_from_stats,
    corpus_bootstrap,
    length_thirds,
    sentence_stats,
    signatures,
    translation_scores,
)

REFS = ["Il gatto è sul tappeto, vicino alla porta.", "Questo pacchetto contiene i file di sviluppo.",
        "Una libreria per leggere e scrivere archivi zip.", "Premete Invio per confermare la scelta.",
        "Il programma mostra una finestra con le opzioni disponibili per l'utente.",
        "Strumenti", "Questa è la documentazione della libreria, in formato HTML e PDF, con esempi."]
HYPS = ["Il gatto sta sul tappeto vicino alla porta.", "Il pacchetto contiene i file per lo sviluppo.",
        "Libreria per leggere archivi zip e scriverli.", "", "Il programma mostra una finestra con le opzioni.",
        "Strumenti strumenti strumenti strumenti strumenti", "ciao ciao ciao ciao ciao"]


def test_corpus_metrics_from_statistics_equal_sacrebleu_on_any_subset():
    bleu_stats, chrf_stats = sentence_stats(HYPS, REFS)
    rng = np.random.default_rng(0)
    for _ in range(25):
        rows = np.unique(rng.integers(0, len(REFS), rng.integers(1, len(REFS) + 1)))
        hyps, refs = [HYPS[i] for i in rows], [REFS[i] for i in rows]
        assert bleu_from_stats(bleu_stats[rows].sum(0)) == pytest.approx(BLEU().corpus_score(hyps, [refs]).score)
        assert chrf_from_stats(chrf_stats[rows].sum(0)) == pytest.approx(CHRF().corpus_score(hyps, [refs]).score)
    # vectorised over leading axes
    both = np.stack([bleu_stats[:3].sum(0), bleu_stats.sum(0)])
    assert bleu_from_stats(both)[1] == pytest.approx(BLEU().corpus_score(HYPS, [REFS]).score)
    assert bleu_from_stats(np.zeros(10)) == 0.0 and chrf_from_stats(np.zeros(18)) == 0.0


def test_translation_scores_lengths_detachment_and_thirds():
    out = translation_scores(HYPS, REFS)
    assert out["bleu-cased"] == pytest.approx(BLEU().corpus_score(HYPS, [REFS]).score)
    assert out["chrf"] == pytest.approx(CHRF().corpus_score(HYPS, [REFS]).score)
    chrf = CHRF()
    sentence = [chrf.sentence_score(h, [r]).score for h, r in zip(HYPS, REFS)]
    hyp_words, ref_words = [len(h.split()) for h in HYPS], [len(r.split()) for r in REFS]
    detached = [c < DETACHED_CHRF for c in sentence]
    overlong = [h > 2 * r for h, r in zip(hyp_words, ref_words)]
    assert out["detached"] == pytest.approx(100 * sum(detached) / 7)
    assert out["overlong"] == pytest.approx(100 * sum(overlong) / 7) and overlong[5]
    assert out["halluc"] == pytest.approx(100 * sum(d or o for d, o in zip(detached, overlong)) / 7)
    assert out["repeat-4"] == pytest.approx(200 / 7)  # the two looping outputs
    bleu = BLEU()
    bleu.corpus_score(HYPS, [REFS])
    assert out["len-ratio"] == pytest.approx(bleu.corpus_score(HYPS, [REFS]).sys_len / bleu.corpus_score(
        HYPS, [REFS]).ref_len)
    third, ranges = length_thirds(REFS)
    assert sorted(np.bincount(third).tolist()) == [2, 2, 3]
    long_rows = [i for i in range(7) if third[i] == 2]
    assert min(ref_words[i] for i in long_rows) >= max(ref_words[i] for i in range(7) if third[i] == 0)
    assert out["chrf/long"] == pytest.approx(CHRF().corpus_score([HYPS[i] for i in long_rows],
                                                                  [[REFS[i] for i in long_rows]]).score)
    assert out["ref-words/long"] == list(ranges[2])
    assert signatures()["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert out["signatures"]["chrf"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0")


def test_corpus_bootstrap_is_paired_and_detects_a_clear_gain():
    better = [h if h else r for h, r in zip(HYPS, REFS)]  # one output fixed
    m = [sentence_stats(better, REFS)[0]] * 2
    r = [sentence_stats(HYPS, REFS)[0]] * 2
    boot = corpus_bootstrap(m, r, "bleu-cased", samples=300)
    expect = BLEU().corpus_score(better, [REFS]).score - BLEU().corpus_score(HYPS, [REFS]).score
    assert boot["mean"] == pytest.approx(expect) and boot["sentences"] == 7 and boot["seeds"] == 2
    assert boot["lo"] <= boot["mean"] <= boot["hi"]
    rc = [sentence_stats(HYPS, REFS)[1]] * 2
    same = corpus_bootstrap(rc, rc, "chrf", samples=50)
    assert same["mean"] == same["lo"] == same["hi"] == 0.0 and same["not_better"] == 1.0
    mc = [sentence_stats(better, REFS)[1]] * 2
    sub = corpus_bootstrap(mc, rc, "chrf", rows=np.array([0, 3]), samples=50)
    assert sub["sentences"] == 2 and sub["mean"] > 0
    with pytest.raises(ValueError):
        corpus_bootstrap(m, r[:1], "bleu-cased")
    with pytest.raises(ValueError, match="chrf needs 18"):
        corpus_bootstrap(m, r, "chrf")


def test_oracle_gap_reads_nbest_output_and_picks_the_best_candidate(tmp_path):
    from fairseq_eb.diagnose.oracle import oracle_gap, read_nbest

    gen = tmp_path / "gen.txt"
    gen.write_text("S-1\tsrc\nT-1\tIl gatto è sul tappeto.\nH-1\t-0.5\tIl cane dorme.\n"
                   "H-1\t-0.7\tIl gatto è sul tappeto.\n"
                   "S-0\tsrc\nT-0\tCiao mondo.\nH-0\t-0.1\tCiao mondo.\nH-0\t-0.9\tCiao a tutti.\n")
    cands, refs = read_nbest(str(gen))
    assert refs == ["Ciao mondo.", "Il gatto è sul tappeto."] and cands[1] == ["Il cane dorme.",
                                                                                "Il gatto è sul tappeto."]
    out = oracle_gap(cands, refs)
    assert out["first_is_oracle"] == 0.5 and out["oracle_mean_rank"] == 1.5 and out["k"] == 2
    assert out["oracle"]["bleu-cased"] == pytest.approx(100.0)
    assert out["first"]["chrf"] == pytest.approx(CHRF().corpus_score(["Ciao mondo.", "Il cane dorme."], [refs]).score)
    assert out["gap"]["chrf"] == pytest.approx(out["oracle"]["chrf"] - out["first"]["chrf"]) and out["gap"]["chrf"] > 0
    bad = tmp_path / "bad.txt"
    bad.write_text("T-0\tx\n")
    with pytest.raises(ValueError, match="nbest"):
        read_nbest(str(bad))
