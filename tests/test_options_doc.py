"""docs/options.md's option tables agree with the dataclasses that define the options.

Why: the dataclass (its ``help`` metadata and default) is the one definition of an option; the tables in
docs/options.md restate the name and default for readers. This test keeps the restatement honest: every
option of the task and the criteria is in its table, every table row names a real option, and the default
shown is the dataclass default.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "options.md"


def _own_fields(config, parent) -> Dict[str, object]:
    """``--option`` → default for the fields ``config`` adds to ``parent`` (fairseq's interpolated ones left out)."""
    inherited = {f.name for f in dataclasses.fields(parent)} if parent else set()
    out = {}
    for f in dataclasses.fields(config):
        if f.name in inherited or f.name.startswith("_") or (isinstance(f.default, str) and f.default.startswith("${")):
            continue
        out["--" + f.name.replace("_", "-")] = f.default
    return out


def _tables() -> Dict[str, List[Tuple[str, str]]]:
    """Section heading → [(option, documented default)] of the table that follows it."""
    tables: Dict[str, List[Tuple[str, str]]] = {}
    section = None
    for line in DOC.read_text().splitlines():
        if line.startswith("### "):
            section = line
            tables[section] = []
        elif section and line.startswith("| `--"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            names = re.findall(r"`(--[a-z0-9-]+)`", cells[0])
            defaults = [d.strip(" `") for d in cells[1].split("/")]
            if len(defaults) != len(names):
                defaults = defaults * len(names)
            tables[section].extend(zip(names, defaults))
    return tables


def _same(documented: str, default: object) -> bool:
    if isinstance(default, bool):
        return documented == ("on" if default else "off")
    if isinstance(default, (int, float)):
        try:
            return float(documented) == float(default)
        except ValueError:
            return False
    return documented == str(default)


def _sections():
    from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterionConfig as LS

    from fairseq_eb.criterions.label_smoothed_cross_entropy_with_gp import (
        LabelSmoothedCrossEntropyWithGpCriterionConfig as GP,
    )
    from fairseq_eb.criterions.sequence_level import SequenceRankingConfig, SequenceRiskConfig
    from fairseq_eb.tasks.replacement_config import ReplacementConfig

    sequence = {**_own_fields(SequenceRiskConfig, LS), **_own_fields(SequenceRankingConfig, LS)}
    return {"Task `translation_with_replacement`": _own_fields(ReplacementConfig, None),
            "Criterion `label_smoothed_cross_entropy_with_gp`": _own_fields(GP, LS),
            "Criteria `sequence_risk` and `sequence_ranking`": sequence}


@pytest.mark.parametrize("heading", ["Task `translation_with_replacement`",
                                     "Criterion `label_smoothed_cross_entropy_with_gp`",
                                     "Criteria `sequence_risk` and `sequence_ranking`"])
def test_option_table_matches_dataclass(heading):
    defined = _sections()[heading]
    tables = [rows for title, rows in _tables().items() if heading in title]
    assert len(tables) == 1, f"docs/options.md has no single section titled {heading}"
    documented = dict(tables[0])
    assert sorted(set(defined) - set(documented)) == [], "options missing from docs/options.md"
    assert sorted(set(documented) - set(defined)) == [], "docs/options.md documents options that do not exist"
    wrong = {o: (documented[o], defined[o]) for o in defined if not _same(documented[o], defined[o])}
    assert wrong == {}, "documented default != dataclass default"


def test_the_checker_finds_a_wrong_default():
    """The comparison is not vacuous: a table row with another default, a missing or a made-up row is found."""
    assert _same("0.3", 0.3) and _same("off", False) and _same("rouge_l", "rouge_l")
    assert not _same("0.5", 0.3) and not _same("on", False) and not _same("bleu", "rouge_l")
    rows = dict(next(rows for title, rows in _tables().items() if "translation_with_replacement" in title))
    assert rows["--replace-token-prob"] == "0.3" and len(rows) >= 10
