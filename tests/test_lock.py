"""The hashed lock file scripts/setup.sh installs from, and scripts/lock_select.py, which keeps a user's packages."""
import importlib.util
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
spec = importlib.util.spec_from_file_location("lock_select", ROOT / "scripts" / "lock_select.py")
lock_select = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock_select)


def locked():
    return {name: (version, block) for name, version, block in lock_select.entries(LOCK.read_text())}


def test_every_entry_is_pinned_and_hashed_and_the_default_stack_is_locked():
    entries = locked()
    assert entries["torch"][0] == "2.13.0+cpu" and entries["ve-fairseq"][0] == "0.12.3"
    for name, (version, block) in entries.items():
        assert "--hash=sha256:" in block, name
    for dep in ("hydra-core", "omegaconf", "sacrebleu", "sentencepiece", "numpy", "pytest", "ruff", "tensorboardx"):
        assert dep in entries, dep


def test_the_lock_covers_the_plugins_declared_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    names = {lock_select.normalise(d.split(">")[0].split("=")[0].split("<")[0].strip()) for d in declared}
    assert names <= set(locked()), names - set(locked())


def test_select_drops_what_is_installed_at_the_locked_version_and_skipped_names():
    pytest_version = metadata.version("pytest")
    text = (f"pytest=={pytest_version} \\\n    --hash=sha256:{'a' * 64}\n"
            f"no-such-package-xyz==1.0 \\\n    --hash=sha256:{'b' * 64}\n"
            f"sacrebleu==0.0.1 \\\n    --hash=sha256:{'c' * 64}\n    # via x\n")
    needed = lock_select.needed(text, skip=[], keep_installed=False)
    assert [b.split("==")[0] for b in needed] == ["no-such-package-xyz", "sacrebleu"]  # sacrebleu: another version
    assert needed[1] == f"sacrebleu==0.0.1 \\\n    --hash=sha256:{'c' * 64}"
    kept = lock_select.needed(text, skip=["No_Such.Package-xyz"], keep_installed=True)
    assert kept == []  # the user's sacrebleu stays, whatever its version


def test_pip_refuses_a_substituted_wheel(tmp_path):
    """What --require-hashes buys: a file that is not the locked one is refused before anything is installed."""
    version, block = locked()["six"]
    fake = tmp_path / "wheels" / f"six-{version}-py2.py3-none-any.whl"
    fake.parent.mkdir()
    with zipfile.ZipFile(fake, "w") as z:  # a well-formed wheel with the locked name, not the locked bytes
        z.writestr("six.py", "raise SystemExit('substituted')\n")
        z.writestr(f"six-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: six\nVersion: {version}\n")
        z.writestr(f"six-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"six-{version}.dist-info/RECORD", "")
    (tmp_path / "req.txt").write_text(block + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(fake.parent),
                           "--require-hashes", "--no-deps", "--target", str(tmp_path / "t"), "-r",
                           str(tmp_path / "req.txt")], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "DO NOT MATCH THE HASHES" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "t" / "six.py").exists()
