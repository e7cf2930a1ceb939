"""Write a diagnosis: ``diagnose.json`` (everything), ``diagnose.md`` (two tables), ``diagnose.png`` (two curves)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from fairseq_eb import atomic


def _f(x: Optional[float], digits: int = 3, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _row_at(rows: List[dict], rate: float) -> Optional[dict]:
    return next((r for r in rows if abs(r["rate"] - rate) < 1e-12), None)


def headline(result: Dict, rate: float = 0.3) -> Dict[str, object]:
    """The few numbers a results table shows: ΔNLL right after own / random errors at ``rate``, and per beam
    the repeated-n-gram share (with the references') and the share of model errors (raw scores).

    Raises ``KeyError`` when ``rate`` was not measured.
    """
    rows = {kind: _row_at(result["recovery"][kind], rate) for kind in ("own", "random")}
    missing = [k for k, r in rows.items() if r is None]
    if missing:
        raise KeyError(f"rate {rate} not measured; measured: {[r['rate'] for r in result['recovery']['own']]}")
    return {
        "rate": rate,
        "delta_nll_own": rows["own"]["next"]["delta_nll"],
        "delta_nll_random": rows["random"]["next"]["delta_nll"],
        "changed_share_own": rows["own"]["changed_share"],
        "repeat_share": {b["beam"]: b["repeat_share"] for b in result["beams"]},
        "ref_repeat_share": result["references"]["repeat_share"],
        "model_error": {b["beam"]: b["search_vs_model"]["raw"]["model_error"] for b in result["beams"]},
    }


def position_markdown(recovery: Dict) -> List[str]:
    """The jump right after a corrupted input by target position, at the largest rate measured (empty when the
    diagnosis holds no position-wise sums): does an early error cost as much as a late one?"""
    rates = [r["rate"] for r in recovery["own"] if r["rate"] > 0 and r.get("next_by_position")]
    if not rates:
        return []
    rate = max(rates)
    own, rnd = _row_at(recovery["own"], rate), _row_at(recovery["random"], rate)
    random_bins = {b["from"]: b for b in rnd.get("next_by_position", [])}
    lines = ["", f"**Error recovery along the output** (rate {rate:g}): the same ΔNLL / Δaccuracy of the step right "
             "after a changed input, by the target position of that step.", "",
             "| positions | own: steps | own: ΔNLL | own: Δacc | random: steps | random: ΔNLL | random: Δacc |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for b in own["next_by_position"]:
        r = random_bins.get(b["from"], {"n": 0, "delta_nll": None, "delta_accuracy": None})
        lines.append(f"| {b['from']}–{b['to']} | {b['n']} | {_f(b['delta_nll'], signed=True)} | "
                     f"{_f(b['delta_accuracy'], signed=True)} | {r['n']} | {_f(r['delta_nll'], signed=True)} | "
                     f"{_f(r['delta_accuracy'], signed=True)} |")
    return lines


def markdown(result: Dict) -> str:
    """Two Markdown tables: error recovery by rate, and the beam curve with search/model errors."""
    rec = result["recovery"]
    tf = result["teacher_forced"]
    lines = [
        f"Diagnosis of `{result['checkpoint']}` on `{result['subset']}` "
        f"({result['n_sentences']} sentences, {tf['ntokens']} target tokens): "
        f"teacher-forced NLL {tf['nll']:.3f} nats/token, accuracy {tf['accuracy']:.3f}.",
        "",
        "**Error recovery**: NLL (nats) and accuracy of the gold token at the step right after a decoder "
        "input replaced by the model's own argmax (*own*) or a random target token (*random*), minus the "
        "same positions with gold inputs; *changed* = share of target tokens whose input actually changed.",
        "",
        "| rate | own: changed | own: ΔNLL next | own: Δacc next | own: ΔNLL later "
        "| random: changed | random: ΔNLL next | random: Δacc next | random: ΔNLL later |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for own in rec["own"]:
        rnd = _row_at(rec["random"], own["rate"])
        cells = [f"{own['rate']:g}"]
        for r in (own, rnd):
            cells += [_f(r["changed_share"]), _f(r["next"]["delta_nll"], signed=True),
                      _f(r["next"]["delta_accuracy"], signed=True), _f(r["later"]["delta_nll"], signed=True)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += position_markdown(rec)
    refs = result["references"]
    n = result["options"]["ngram"]
    lines += [
        "",
        f"**Beam curve** (references: repeated {n}-gram share {refs['repeat_share']:.3f}, mean length "
        f"{refs['mean_len']:.1f}); search error = the model scores the reference higher than its beam output, "
        "model error = lower (raw / length-normalised log-probability).",
        "",
        f"| beam | ROUGE-L | BLEU | mean len | empty | repeated {n}-gram | exact | search err | model err "
        "| search err (norm) | model err (norm) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in result["beams"]:
        sm = b["search_vs_model"]
        lines.append("| " + " | ".join([
            str(b["beam"]), f"{b['scores']['rouge-l']:.2f}", f"{b['scores']['bleu']:.2f}", f"{b['mean_len']:.1f}",
            _f(b["empty_share"]), _f(b["repeat_share"]), _f(sm["exact_match"]),
            _f(sm["raw"]["search_error"]), _f(sm["raw"]["model_error"]),
            _f(sm["normalized"]["search_error"]), _f(sm["normalized"]["model_error"])]) + " |")
    return "\n".join(lines) + "\n"


def plot(result: Dict, out: Path) -> Path:
    """Left: ΔNLL after a corrupted input vs rate (own / random); right: ROUGE-L and repetition vs beam."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for kind, label in (("own", "own argmax errors"), ("random", "random target tokens")):
        rows = [r for r in result["recovery"][kind] if r["next"]["delta_nll"] is not None]
        ax1.plot([0.0] + [r["rate"] for r in rows], [0.0] + [r["next"]["delta_nll"] for r in rows],
                 marker="o", label=label)
    ax1.set_xlabel("corruption rate r")
    ax1.set_ylabel("ΔNLL after a corrupted input (nats)")
    ax1.set_title("error recovery")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    beams = [b["beam"] for b in result["beams"]]
    ax2.plot(beams, [b["scores"]["rouge-l"] for b in result["beams"]], marker="o", color="C0", label="ROUGE-L")
    ax2.set_xlabel("beam size")
    ax2.set_ylabel("ROUGE-L × 100")
    ax2.set_xticks(beams)
    ax2.grid(alpha=0.3)
    ax3 = ax2.twinx()
    n = result["options"]["ngram"]
    ax3.plot(beams, [b["repeat_share"] for b in result["beams"]], marker="s", color="C3",
             label=f"repeated {n}-gram share")
    ax3.axhline(result["references"]["repeat_share"], color="C3", linestyle="--", linewidth=1,
                label="references")
    ax3.plot(beams, [b["search_vs_model"]["raw"]["model_error"] for b in result["beams"]], marker="^",
             color="C2", label="model-error share")
    ax3.set_ylabel("share")
    ax3.set_ylim(0, 1)
    handles = ax2.get_legend_handles_labels()[0] + ax3.get_legend_handles_labels()[0]
    ax3.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="best")
    ax2.set_title("beam curve")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.save_with(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def write_report(result: Dict, out_dir) -> Dict[str, Path]:
    """Write the three files into ``out_dir`` (created); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "diagnose.json", "markdown": out / "diagnose.md", "png": out / "diagnose.png"}
    atomic.write_text(paths["markdown"], markdown(result))
    plot(result, paths["png"])
    atomic.write_json(paths["json"], result)  # last: the recipe skips a diagnosis whose JSON exists
    return paths
