"""curves.md: the validation curve of every run and how its training ended (fairseq_eb.recipe.curves)."""
from fairseq_eb.recipe.curves import BUDGET_END, EARLY_STOP, Curve, curves_markdown, ended_by, max_update_of
from fairseq_eb.recipe.selection import Validation, parse_validations

LOG = """\
21:40:01 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 7.1 | nll_loss 6.2 | bleu 3.5 | num_updates 300
21:41:01 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 6.9 | nll_loss 6.0 | bleu 4.25 | num_updates 600
21:42:01 | INFO | valid | epoch 002 | valid on 'valid' subset | loss 6.8 | nll_loss 5.9 | bleu 4.0 | num_updates 900
2026-11-25 21:44:44 | INFO | fairseq_cli.train | early stop since valid performance hasn't improved for last 1 runs
"""


def test_ended_by_reads_fairseqs_early_stop_line_else_compares_with_the_budget():
    validations = parse_validations(LOG)
    assert ended_by(LOG, validations, 2400) == EARLY_STOP
    without = LOG.rsplit("\n", 2)[0]
    assert ended_by(without, validations, 900) == BUDGET_END
    assert ended_by(without, validations, 2400) == "other"  # e.g. stopped by --max-epoch or killed


def test_table_marks_the_selected_checkpoint_and_counts_how_runs_ended():
    early = Curve("baseline", 1, parse_validations(LOG), 600, EARLY_STOP)
    rising = Curve("RR", 1, [Validation(300, 7.0, 3.0), Validation(600, 6.9, 3.5), Validation(1200, 6.5, 5.0)],
                   1200, BUDGET_END)
    text = curves_markdown([early, rising])
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert rows["| method"] == "| method | seed | 300 | 600 | 900 | 1,200 | best at | ended by |"
    assert rows["| baseline"] == "| baseline | 1 | 3.50 | **4.25** | 4.00 | – | 600 | early stop |"
    assert rows["| RR"] == "| RR | 1 | 3.00 | 3.50 | – | **5.00** | 1,200 | budget end |"
    assert "1 of 2 runs ended by early stopping; 1 of 2 were best at their last validation" in text
    loss = curves_markdown([rising], metric="loss")
    assert "| RR | 1 | 7.00 | 6.90 | **6.50** |" in loss and loss.startswith("valid loss")


def test_max_update_of_takes_the_last_occurrence():
    assert max_update_of(["--lr", "1", "--max-update", "10", "--max-update", "20"]) == 20
    assert max_update_of(["--lr", "1"]) == 0
