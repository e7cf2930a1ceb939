"""Build the offline default dataset: Debian package long descriptions -> their one-line synopsis.

``python -m fairseq_eb.prep.debian --out DIR`` downloads ``Translation-en`` of Debian ``main`` with
apt's ordinary client into ``DIR/apt`` (a private sources list and lists directory, so the system's
apt state is untouched), decompresses it to ``DIR/Translation-en`` and writes
``DIR/raw/{train,valid,test}.{src,tgt}`` plus ``DIR/manifest.json``. Finished steps are skipped.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import List, Optional, Sequence

from fairseq_eb import atomic
from fairseq_eb.prep.common import (
    PrepError,
    check_out_dir,
    check_same_corpus,
    log,
    raw_is_complete,
    raw_sha256,
    recorded_manifest,
    run_main,
    sha256_file,
    write_json,
    write_raw,
)
from fairseq_eb.prep.debian_parse import Limits, build_splits, parse_translation

DEFAULT_DIST = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_HELPER = "/usr/lib/apt/apt-helper"
TSV_HINT = ("To use your own data instead, write a TSV file per split (title<TAB>text) and run\n"
            "  python -m fairseq_eb.prep.tsv --train T --valid V --test S --format reference --out DIR\n"
            "(scripts/prepare_tsv.sh does the same).")


def check_apt(keyring: str) -> None:
    """Fail early, and say why, where apt cannot be used (not Debian/Ubuntu, not root, no keyring)."""
    if shutil.which("apt-get") is None or not os.path.exists(APT_HELPER):
        raise PrepError("apt-get / apt-helper not found: the Debian dataset is fetched with apt's own "
                        "client, which needs a Debian or Ubuntu system.\n" + TSV_HINT)
    if os.geteuid() != 0:
        raise PrepError("apt-get update must run as root (it drops privileges to the _apt user to "
                        "download); run this preparer as root, e.g. with sudo, or a root container.\n"
                        + TSV_HINT)
    if not os.path.exists(keyring):
        raise PrepError(f"Debian archive keyring {keyring} not found (apt-get install "
                        "debian-archive-keyring), or pass --keyring FILE.\n" + TSV_HINT)


def _apt_options(apt_dir: Path) -> List[str]:
    """apt options that confine it to ``apt_dir`` (private sources, lists and cache: the system's apt is untouched)."""
    lists, parts, cache = apt_dir / "lists", apt_dir / "sources.list.d", apt_dir / "cache"
    return ["-o", f"Dir::Etc::SourceList={apt_dir / 'sources.list'}", "-o", f"Dir::Etc::SourceParts={parts}",
            "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={cache}"]


def apt_update(apt_dir: Path, dist: str, mirror: str, keyring: str, languages: Sequence[str] = ("en",),
               packages: bool = False) -> Path:
    """Run ``apt-get update`` for ``dist``/main into ``apt_dir``; returns its lists directory.

    Only InRelease (signature-checked against ``keyring``) and the ``Translation-<language>`` indices are
    fetched (~6 MB each), plus the package index when ``packages`` (needed to download a .deb by name).
    """
    lists, parts, cache = apt_dir / "lists", apt_dir / "sources.list.d", apt_dir / "cache"
    for d in (lists / "partial", parts, cache / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    (apt_dir / "sources.list").write_text(f"deb [signed-by={keyring}] {mirror} {dist} main\n")
    cmd = ["apt-get", "update", *_apt_options(apt_dir),
           "-o", f"Acquire::Languages={','.join(languages)}",
           "-o", f"Acquire::IndexTargets::deb::Packages::DefaultEnabled={str(packages).lower()}",
           "-o", "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
           "-o", "APT::Get::List-Cleanup=false"]
    what = ", ".join(f"Translation-{lang}" for lang in languages) + (", Packages" if packages else "")
    log(f"apt-get update for {mirror} {dist} main ({what}) into {apt_dir}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PrepError(f"apt-get update failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}"
                        f"{proc.stderr[-2000:]}\nCheck network access to {mirror} (or pass --mirror URL).\n"
                        + TSV_HINT)
    return lists


def stored_translation(lists: Path, dist: str, language: str) -> Path:
    """The (possibly compressed) ``Translation-<language>`` file that ``apt-get update`` stored."""
    found = [p for p in glob.glob(str(lists / f"*_dists_{dist}_main_i18n_Translation-{language}*"))
             if not p.endswith((".diff", ".ed"))]
    if not found:
        raise PrepError(f"apt-get update succeeded but stored no Translation-{language} for {dist}/main in {lists}")
    return Path(sorted(found)[0])


def apt_download(apt_dir: Path, dist: str, mirror: str, keyring: str) -> Path:
    """``apt-get update`` for English translations only; returns the stored ``Translation-en``."""
    return stored_translation(apt_update(apt_dir, dist, mirror, keyring), dist, "en")


def apt_fetch_deb(apt_dir: Path, package: str, dest: Path) -> Path:
    """Download one binary package (the version ``apt_dir``'s index holds) into ``dest``; returns the .deb."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob(f"{package}_*.deb"):
        old.unlink()
    log(f"apt-get download {package}")
    proc = subprocess.run(["apt-get", "download", *_apt_options(apt_dir), package], cwd=dest,
                          capture_output=True, text=True)
    found = sorted(dest.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not found:
        raise PrepError(f"apt-get download {package} failed (exit {proc.returncode}):\n{proc.stdout[-1500:]}"
                        f"{proc.stderr[-1500:]}")
    return found[-1]


def decompress(stored: Path, target: Path) -> Path:
    """``apt-helper cat-file``: apt's own decompression of a stored index, written atomically to ``target``."""
    log(f"decompressing {stored.name}")
    with atomic.writing(target) as tmp:
        with open(tmp, "wb") as f:
            proc = subprocess.run([APT_HELPER, "cat-file", str(stored)], stdout=f, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise PrepError(f"apt-helper cat-file {stored} failed: {proc.stderr.decode(errors='replace')}")
    return target


def release_date(apt_dir: Path, dist: str) -> Optional[str]:
    """The ``Date:`` of the signed Release file, which identifies the archive state used."""
    for path in glob.glob(str(apt_dir / "lists" / f"*_dists_{dist}_InRelease")):
        m = re.search(r"^Date: (.+)$", Path(path).read_text(errors="replace"), re.M)
        if m:
            return m.group(1).strip()
    return None


def fetch_translation(out: Path, dist: str, mirror: str, keyring: str, refresh: bool) -> Path:
    """Step 1: ``DIR/Translation-en`` (plain text), downloaded once and then reused."""
    target = out / "Translation-en"
    if target.exists() and target.stat().st_size > 0 and not refresh:
        log(f"using the downloaded {target} (--refresh to download again)")
        return target
    check_apt(keyring)
    return decompress(apt_download(out / "apt", dist, mirror, keyring), target)


def check_options(limits: Limits, valid_permille: int, test_permille: int) -> None:
    """Refuse limits and shares that leave a split empty by construction, before anything is downloaded."""
    for option, value in (("--valid-permille", valid_permille), ("--test-permille", test_permille)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
            raise PrepError(f"{option} must be an integer in [0, 1000] (thousandths of the packages), got {value!r}")
    if valid_permille + test_permille >= 1000:
        raise PrepError(f"--valid-permille {valid_permille} + --test-permille {test_permille} must be below 1000, "
                        "or no package is left for training")
    for side in ("src", "tgt"):
        low, high = getattr(limits, f"min_{side}_words"), getattr(limits, f"max_{side}_words")
        if low < 0 or high < max(low, 1):
            raise PrepError(f"--min-{side}-words {low} and --max-{side}-words {high}: need 0 <= min <= max and "
                            "max >= 1, or every package is dropped")
    if limits.max_per_group < 1:
        raise PrepError(f"--max-per-group must be an integer >= 1, got {limits.max_per_group}")


def check_splits(source: Path, splits: dict, stats: dict, valid_permille: int, test_permille: int) -> None:
    """Refuse empty splits instead of writing them: an empty training or test set is no corpus."""
    if stats["entries"] == 0:
        raise PrepError(f"{source}: no deb822 stanzas with Package: and Description-en: fields; is it Debian's "
                        "Translation-en? (--refresh downloads it again)")
    wanted = {"train": True, "valid": valid_permille > 0, "test": test_permille > 0}
    empty = [split for split in splits if wanted[split] and not splits[split]]
    if empty:
        dropped = ", ".join(f"{k} {v}" for k, v in stats.items() if k not in ("entries", "kept") and v)
        raise PrepError(f"{source}: the {'/'.join(empty)} split would be empty ({stats['entries']} packages, "
                        f"{stats['kept']} kept; dropped: {dropped or 'none'}); widen the length limits or the "
                        "split shares")


def other_corpus(manifest: Optional[dict], dist: str) -> Optional[str]:
    """What a recorded manifest holds when it is not this Debian release's descriptions (None when it is)."""
    if manifest is None:
        return None
    if manifest.get("dataset") != "debian-descriptions":
        return f"{manifest.get('dataset', 'data of another preparer')}, not Debian descriptions"
    recorded = (manifest.get("parameters") or {}).get("dist")
    return None if recorded == dist else f"Debian {recorded}, not {dist}"


def prepare(out: Path, dist: str = DEFAULT_DIST, mirror: str = DEFAULT_MIRROR, keyring: str = DEFAULT_KEYRING,
            limits: Limits = Limits(), valid_permille: int = 50, test_permille: int = 50,
            refresh: bool = False) -> dict:
    """Fetch (once) and build ``out/raw`` + ``out/manifest.json``; return the manifest."""
    start = time.time()
    out = Path(out).resolve()  # apt resolves relative directories against /etc/apt, not the cwd
    check_out_dir(out)
    check_options(limits, valid_permille, test_permille)
    manifest = recorded_manifest(out)
    check_same_corpus(out, manifest, other_corpus(manifest, dist))
    out.mkdir(parents=True, exist_ok=True)
    source = fetch_translation(out, dist, mirror, keyring, refresh)
    digest = sha256_file(source)
    parameters = {"dist": dist, "component": "main", "limits": limits._asdict(),
                  "valid_permille": valid_permille, "test_permille": test_permille}
    manifest_path = out / "manifest.json"
    expect = {"input_sha256": digest, "parameters": parameters}
    if raw_is_complete(out, manifest, expect):
        log(f"{out}/raw is up to date ({manifest['counts']}); nothing to do")
        return manifest
    log(f"parsing {source} (sha256 {digest[:12]}...)")
    entries = parse_translation(source.read_text(encoding="utf-8", errors="replace"))
    splits, stats = build_splits(entries, limits, valid_permille, test_permille)
    check_splits(source, splits, stats, valid_permille, test_permille)
    log(f"{stats['entries']} packages -> {stats['kept']} pairs; dropped: "
        + ", ".join(f"{k} {v}" for k, v in stats.items() if k not in ("entries", "kept")))
    counts = write_raw(out, splits)
    manifest = {"dataset": "debian-descriptions", "input": str(source), "input_sha256": digest,
                "mirror": mirror, "release_date": release_date(out / "apt", dist),
                "parameters": parameters, "counts": counts, "outputs_sha256": raw_sha256(out),
                "stats": stats,
                "src": "long description (paragraphs joined)", "tgt": "synopsis",
                "seconds": round(time.time() - start, 1)}
    write_json(manifest_path, manifest)
    log(f"wrote {out}/raw: train {counts['train']}, valid {counts['valid']}, test {counts['test']}")
    return manifest


def add_apt_options(parser: argparse.ArgumentParser) -> None:
    """``--dist``, ``--mirror`` and ``--keyring``: where every Debian preparer fetches from, said once."""
    parser.add_argument("--dist", default=DEFAULT_DIST, help="Debian release (default: %(default)s)")
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help="Debian mirror URL (default: %(default)s)")
    parser.add_argument("--keyring", default=DEFAULT_KEYRING, help="keyring that signs the release")


def main(argv=None) -> None:
    d = Limits()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output directory (created)")
    add_apt_options(parser)
    parser.add_argument("--min-src-words", type=int, default=d.min_src_words)
    parser.add_argument("--max-src-words", type=int, default=d.max_src_words)
    parser.add_argument("--min-tgt-words", type=int, default=d.min_tgt_words)
    parser.add_argument("--max-tgt-words", type=int, default=d.max_tgt_words)
    parser.add_argument("--max-per-group", type=int, default=d.max_per_group,
                        help="most examples kept per sibling group (default: %(default)s)")
    parser.add_argument("--valid-permille", type=int, default=50)
    parser.add_argument("--test-permille", type=int, default=50)
    parser.add_argument("--refresh", action="store_true", help="download Translation-en again")
    args = parser.parse_args(argv)
    limits = Limits(args.min_src_words, args.max_src_words, args.min_tgt_words, args.max_tgt_words,
                    args.max_per_group)
    run_main(lambda: prepare(args.out, args.dist, args.mirror, args.keyring, limits,
                             args.valid_permille, args.test_permille, args.refresh), lock=(args.out, "--out"))


if __name__ == "__main__":
    main()
