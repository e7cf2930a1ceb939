"""fairseq's --tensorboard-logdir works after setup and records the plugin's own columns (gp, replaced)."""
import struct
from pathlib import Path
from typing import Dict, List

import pytest

from tests.fairseq_tools import TINY_MODEL, TRAIN_COMMON, USER_DIR, run_fairseq


def read_scalars(event_file: Path) -> Dict[str, List[float]]:
    """{tag: values} of one event file: TFRecord frames (length, crc, Event protobuf, crc)."""
    from tensorboardX.proto import event_pb2

    scalars: Dict[str, List[float]] = {}
    data = event_file.read_bytes()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


@pytest.mark.slow
def test_tensorboard_logdir_records_gp_and_replaced(toy_bin, tmp_path):
    logdir = tmp_path / "tb"
    proc = run_fairseq("train", [
        toy_bin, "--user-dir", USER_DIR, "--task", "translation_with_replacement",
        "--criterion", "label_smoothed_cross_entropy_with_gp", "--label-smoothing", "0.1",
        *TINY_MODEL, *TRAIN_COMMON, "--save-dir", tmp_path / "ck", "--max-update", "3",
        "--tensorboard-logdir", logdir])
    assert "install tensorboard" not in (proc.stdout + proc.stderr).lower()  # nor fairseq's tensorboardX notice
    files = sorted(logdir.glob("train_inner/events.out.tfevents.*"))
    assert files, sorted(str(p.relative_to(logdir)) for p in logdir.rglob("*"))
    scalars: Dict[str, List[float]] = {}
    for f in files:
        for tag, values in read_scalars(f).items():
            scalars.setdefault(tag, []).extend(values)
    assert len(scalars["gp"]) == 3 and all(v > 0 for v in scalars["gp"])
    assert len(scalars["replaced"]) == 3 and all(0 < v < 100 for v in scalars["replaced"])
    assert "loss" in scalars and "nll_loss" in scalars
    epoch = read_scalars(sorted(logdir.glob("train/events.out.tfevents.*"))[0])
    assert "gp" in epoch and "replaced" in epoch
