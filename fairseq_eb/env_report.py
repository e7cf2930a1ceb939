"""``fairseq-eb-env`` (or ``python -m fairseq_eb env``): the environment, for a bug report.

Why: a failure can come from the fairseq build (several community builds of 0.12 differ: docs/compatibility.md),
the torch version (``weights_only`` default since 2.6), a compiled extension that did not build, or one of the
plugin's patches. One command prints all of it; paste its output into the issue (.github/ISSUE_TEMPLATE).
Nothing here changes fairseq: the patches are evaluated, not installed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from typing import Any, Dict, List, Optional

FAIRSEQ_EXTENSIONS = ("fairseq.data.data_utils_fast", "fairseq.data.token_block_utils_fast", "fairseq.libbleu",
                      "fairseq.libbase", "fairseq.libnat")
FAIRSEQ_CUDA_EXTENSIONS = ("fairseq.libnat_cuda", "fairseq.ngram_repeat_block_cuda")
OTHER_PACKAGES = ("numpy", "omegaconf", "hydra-core", "sacrebleu", "sentencepiece", "torchaudio", "pip")


def git_commit(package_dir: str) -> Optional[str]:
    """``git describe`` of the checkout whose top level holds ``package_dir`` (None if not such a checkout)."""
    parent = os.path.dirname(os.path.abspath(package_dir))

    def git(*args: str) -> Optional[str]:
        try:
            r = subprocess.run(["git", "-C", parent, *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or os.path.realpath(top) != os.path.realpath(parent):  # e.g. a venv inside some other repository
        return None
    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}{' (modified)' if dirty else ''}" if commit else None


def install_kind(dist_name: Optional[str]) -> str:
    """How the distribution was installed: editable (with its source), from a local directory, or a wheel/sdist."""
    from importlib import metadata

    if not dist_name:
        return "unknown (no installed distribution provides it: on sys.path directly?)"
    # the installed record has direct_url.json; a source tree's *.egg-info on sys.path (run from a checkout) has not
    records = [d.read_text("direct_url.json") for d in metadata.distributions(name=dist_name)]
    if not records:  # pragma: no cover
        return "unknown"
    text = next((r for r in records if r), None)
    if not text:
        return "from a wheel or sdist (an index or --find-links)"
    info = json.loads(text)
    url = info.get("url", "")
    if info.get("dir_info", {}).get("editable"):
        return f"editable, from {url}"
    if "vcs_info" in info:
        return f"from {info['vcs_info'].get('vcs', 'vcs')} {url}@{info['vcs_info'].get('commit_id', '?')}"
    return f"from {url}"


def _import_error(module: str) -> Optional[str]:
    import importlib

    try:
        importlib.import_module(module)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{type(e).__name__}: {first}"[:200]
    return None


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def torch_info() -> Dict[str, Any]:
    """torch's version and build, and the CUDA/cuDNN/GPUs it sees (when present)."""
    try:
        import torch
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
    info: Dict[str, Any] = {"version": torch.__version__, "location": os.path.dirname(torch.__file__),
                            "cuda_build": torch.version.cuda or "none (CPU build)",
                            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def fairseq_info() -> Dict[str, Any]:
    """Which fairseq: version, distribution, location, how installed, git commit, compiled extensions."""
    from fairseq_eb.fairseq_check import distribution_of, problem

    dist = distribution_of("fairseq")
    state, reason = problem()
    info: Dict[str, Any] = {"distribution": f"{dist[0]} {dist[1]}" if dist else "none found"}
    if state != "ok":
        info["error"] = reason or "not installed"
        return info
    import fairseq

    location = os.path.dirname(os.path.abspath(fairseq.__file__))
    info.update(version=getattr(fairseq, "__version__", "?"), location=location,
                installed=install_kind(dist[0] if dist else None), git_commit=git_commit(location) or "none")
    extensions = {m: _import_error(m) or "ok" for m in FAIRSEQ_EXTENSIONS}
    try:
        import torch

        if torch.cuda.is_available():
            extensions.update({m: _import_error(m) or "ok" for m in FAIRSEQ_CUDA_EXTENSIONS})
    except Exception:  # pragma: no cover - torch broken: reported above
        pass
    info["compiled_extensions"] = extensions
    return info


def plugin_info() -> Dict[str, Any]:
    """The plugin's version, install, commit and the ``--user-dir`` value."""
    import fairseq_eb
    from fairseq_eb.user_dir import user_dir

    return {"version": fairseq_eb.__version__, "user_dir": user_dir(), "installed": install_kind("fairseq-eb"),
            "git_commit": git_commit(user_dir()) or "none"}


def patches_info() -> Dict[str, Any]:
    """Every patch with its state here; evaluated only when fairseq imports."""
    from fairseq_eb import patches
    from fairseq_eb.fairseq_check import problem

    info: Dict[str, Any] = {"selection": f"{patches.ENV_VAR}={os.environ.get(patches.ENV_VAR, '')}"}
    try:
        patches.selection()
    except patches.PatchSelectionError as e:
        info["selection_error"] = str(e)
        return info
    if problem()[0] != "ok":
        info["error"] = "not evaluated: fairseq does not import"
        return info
    info["patches"] = [{"name": s.patch.name, "state": s.state, "here": s.why_here, "fixes": s.patch.fixes,
                        "needed_by": s.patch.needed_by, "test": s.patch.test,
                        "changes_results": s.patch.changes_results} for s in patches.status()]
    return info


def collect() -> Dict[str, Any]:
    """The whole report as a dict (the ``--json`` output)."""
    return {
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "platform": {"system": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "torch": torch_info(),
        "fairseq": fairseq_info(),
        "fairseq-eb": plugin_info(),
        "packages": {name: _version(name) for name in OTHER_PACKAGES},
        "patches": patches_info(),
    }


def format_text(report: Dict[str, Any]) -> str:
    """The report as plain ``key: value`` lines, grouped by section."""
    lines: List[str] = []
    for section in ("python", "platform", "torch", "fairseq", "fairseq-eb", "packages"):
        lines.append(f"[{section}]")
        for key, value in report[section].items():
            if isinstance(value, dict):
                lines.append(f"{key}:")
                lines += [f"  {k}: {v}" for k, v in value.items()]
            else:
                lines.append(f"{key}: {value}")
    p = report["patches"]
    lines += ["[patches]", p["selection"]]
    for key in ("selection_error", "error"):
        if key in p:
            lines.append(f"error: {p[key]}")
    for item in p.get("patches", []):
        lines.append(f"{item['name']}: {item['state']} - {item['here']}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Print the report; exit 2 when ``FAIRSEQ_EB_PATCHES`` is malformed (the report still prints)."""
    parser = argparse.ArgumentParser(
        prog="fairseq-eb-env",
        description="Print Python, platform, torch, fairseq and plugin versions and the plugin's patches, for a bug "
        "report (paste the output into the issue).")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--patches", action="store_true",
                        help="also print, per patch, what it fixes, which builds need it and the test that fails "
                        "without it")
    args = parser.parse_args(argv)
    report = collect()
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(format_text(report))
        if args.patches:
            for item in report["patches"].get("patches", []):
                print(f"\n{item['name']}{' (changes results)' if item['changes_results'] else ''}\n"
                      f"  fixes: {item['fixes']}\n  needed by: {item['needed_by']}\n  test: {item['test']}")
    if "selection_error" in report["patches"]:
        print(f"fairseq-eb-env: error: {report['patches']['selection_error']}", file=sys.stderr)
        return 2
    return 0


def cli() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
