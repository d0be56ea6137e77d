"""Scoring images with a trained model: streaming, batched, decoding overlapped with the model.

Images are decoded and resized in DataLoader worker processes while the model runs on the
previous batch; nothing holds more than a few batches of decoded images, so a folder of any
size scores in bounded memory. A file that cannot be decoded is reported and skipped.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from mixiqa.data.transforms import CPU_BATCH_PIXELS, same_shape_groups
from mixiqa.errors import DataError
from mixiqa.progress import progress

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def expand_inputs(items: Sequence[str]) -> list[str]:
    """Files, folders (searched recursively for images) and glob patterns -> sorted paths."""
    out: list[str] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            out.append(str(p))
        elif any(c in item for c in "*?["):
            out += sorted(f for f in glob.glob(item, recursive=True) if Path(f).is_file())
        else:
            raise DataError(f"'{item}' is not a file, a folder or a glob that matches files.")
    if not out:
        raise DataError(f"No images found in {', '.join(items)} "
                        f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))}).")
    return list(dict.fromkeys(out))


def model_transform(model) -> "callable":
    """The test-time input of a model: the cached-feature crop, or the full test resize."""
    from mixiqa.data.transforms import Transform

    bb = model.backbone
    f = model.meta.get("features")
    if f:
        return Transform(f["short"], f["crop"], "center", 1, tuple(bb.mean), tuple(bb.std),
                         f.get("max_short"))
    return Transform(model.meta.get("eval", {}).get("short", 768), None, "center", 1,
                     tuple(bb.mean), tuple(bb.std))


class _Images(Dataset):
    def __init__(self, paths: Sequence[str], transform):
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, self.transform.pixels(self.paths[i]), None   # uint8: 1/4 the bytes
        except DataError as e:  # reported and skipped, never aborts the batch
            return i, None, str(e)


def _keep(batch):
    return batch  # a list of (index, tensor or None, error or None)


@dataclass
class ScoreResult:
    path: str
    score: float | None
    error: str | None = None


def iter_scores(model, paths: Sequence[str], batch_size: int = 16, workers: int = 2,
                scale: str | None = None, device: str = "cpu",
                show_progress: bool = True, decode: str = "processes") -> Iterator[ScoreResult]:
    """Yield one :class:`ScoreResult` per path, in order, as batches finish.

    Args:
        model: A loaded :class:`~mixiqa.models.iqa.IQAModel` (with backbone) or ensemble.
        workers: Decoding threads (or processes); 0 decodes in the calling thread.
        scale: None for the model's quality q; a training dataset's name for its scale.
        decode: ``processes`` (default: DataLoader workers) or ``threads`` (a thread pool;
            Pillow releases the GIL, but on a 2-core CPU it measured slower, see benchmarks/).
    """
    tf = model_transform(model)
    model.eval().to(device)
    out = model.meta.get("output") or {}            # e.g. the shipped model: CLIVE, 0-100
    if scale is None and out.get("scale"):
        scale, clip = out["scale"], out.get("clip")
    else:
        scale, clip = (None if scale == "q" else scale), None
    batches = (_thread_batches(_Images(paths, tf), batch_size, workers) if decode == "threads"
               else DataLoader(_Images(paths, tf), batch_size=batch_size, num_workers=workers,
                               collate_fn=_keep, prefetch_factor=2 if workers else None))
    max_pixels = CPU_BATCH_PIXELS if device == "cpu" else None   # forward passes, see there
    n_batches = (len(paths) + batch_size - 1) // batch_size
    bar = progress(batches, total=n_batches, desc="scoring", enable=show_progress)
    with torch.inference_mode():
        for batch in bar:
            good = [(i, x) for i, x, _ in batch if x is not None]
            scores: dict[int, float] = {}
            for group in same_shape_groups([x for _, x in good], max_pixels):
                idx = [good[j][0] for j in group]
                x = torch.stack([good[j][1] for j in group]).to(device)  # uint8 (B, 3, H, W)
                x = tf.normalize(x).contiguous(memory_format=torch.channels_last)
                q = model.predict(x, scale)
                if clip:
                    q = q.clamp(*clip)
                scores.update(zip(idx, q.float().cpu().tolist()))
            for i, x, err in batch:
                yield ScoreResult(paths[i], scores.get(i), err)


def _thread_batches(items: _Images, batch_size: int, threads: int, depth: int = 2):
    """Batches of ``items`` decoded by a thread pool ``depth`` batches ahead of the model:
    memory holds at most ``depth + 1`` batches whatever the number of images."""
    starts = iter(range(0, len(items), batch_size))
    if threads <= 0:
        for s in starts:
            yield [items[j] for j in range(s, min(s + batch_size, len(items)))]
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="mixiqa-decode") as pool:
        submit = lambda s: [pool.submit(items.__getitem__, j)  # noqa: E731
                            for j in range(s, min(s + batch_size, len(items)))]
        pending = deque(submit(s) for s in itertools.islice(starts, depth))
        while pending:
            futures = pending.popleft()
            nxt = next(starts, None)
            if nxt is not None:
                pending.append(submit(nxt))
            yield [f.result() for f in futures]


# ---- shards: one part per rank (torchrun) or per job (--shard K/N), merged in input order --

PART_HEADER = ["path", "score", "error"]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        k, n = -1, 0
    if not 0 <= k < n:
        raise DataError(f"--shard '{text}' must be K/N with 0 <= K < N, e.g. 0/4.")
    return k, n


def write_part(results: Iterable[ScoreResult], path: str | Path) -> tuple[int, int]:
    """Every result of one shard, failures included (so a merge can account for them);
    written to a temporary name and renamed when complete. Returns (scored, failed)."""
    import csv

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    ok = failed = 0
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PART_HEADER)
        for r in results:
            w.writerow([r.path, "" if r.score is None else f"{r.score:.6g}", r.error or ""])
            ok, failed = (ok + 1, failed) if r.score is not None else (ok, failed + 1)
    os.replace(tmp, path)
    return ok, failed


def merge_parts(parts: Sequence[str | Path], expected: Sequence[str]) -> list[ScoreResult]:
    """Results of every shard in the order of ``expected``; every expected image must be in
    exactly one part (a lost or duplicated image is an error naming it)."""
    import csv

    seen: dict[str, ScoreResult] = {}
    for part in parts:
        if not Path(part).is_file():
            raise DataError(f"Shard file '{part}' is missing: did that shard finish?")
        with open(part, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0] != PART_HEADER:
            raise DataError(f"'{part}' is not a mixiqa shard file (header {PART_HEADER}).")
        for p, s, err in rows[1:]:
            if p in seen:
                raise DataError(f"'{p}' was scored by two shards (again in '{part}').")
            seen[p] = ScoreResult(p, float(s) if s else None, err or None)
    missing = [p for p in expected if p not in seen]
    extra = [p for p in seen if p not in set(expected)]
    if missing or extra:
        raise DataError(f"Shards do not cover the inputs exactly: {len(missing)} missing "
                        f"(e.g. {missing[:2]}), {len(extra)} unexpected (e.g. {extra[:2]}).")
    return [seen[p] for p in expected]
