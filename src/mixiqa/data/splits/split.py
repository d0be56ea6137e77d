"""The :class:`Split` record: a train/val/test partition as lists of ``dataset/name`` keys,
saved as readable JSON and checked against the manifest it is applied to."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from mixiqa.data.manifest import Manifest, Record
from mixiqa.errors import DataError

PARTS = ("train", "val", "test")


@dataclass
class Split:
    """One train/val/test partition of a manifest, as lists of ``dataset/name`` keys.

    Attributes:
        train: Keys of the training images.
        val: Keys of the validation images (checkpoint selection; may be empty).
        test: Keys of the test images.
        protocol: Name of the protocol that made it (``random``, ``cross``...).
        seed: The seed it was drawn with.
        ratios: Requested (train, val, test) fractions, for ratio protocols.
        datasets: Datasets the split covers, sorted.
        notes: A sentence for humans (what was held out, how val was carved).
        options: The protocol's other settings, JSON-ready, so the split can be traced.
        source: File it was loaded from, for error messages; not saved nor compared.
    """

    train: list[str]
    val: list[str]
    test: list[str]
    protocol: str = "random"
    seed: int | None = None
    ratios: tuple[float, float, float] | None = None
    datasets: list[str] = field(default_factory=list)
    notes: str = ""
    options: dict = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)

    def parts(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per dataset in each part, e.g. ``{"train": {"live": 470}, ...}``."""
        out: dict[str, dict[str, int]] = {}
        for part, keys in self.parts().items():
            names = [k.split("/", 1)[0] for k in keys]
            out[part] = {d: names.count(d) for d in sorted(set(names))}
        return out

    def validate(self) -> None:
        """Raise DataError when a key is listed twice or in two parts."""
        seen: dict[str, str] = {}
        for part, keys in self.parts().items():
            for k in keys:
                if k in seen:
                    raise DataError(
                        f"{self._where()}: '{k}' is listed in both {seen[k]} and {part}. "
                        "A split must be disjoint; rebuild it with make_splits.")
                seen[k] = part

    def apply(self, manifest: Manifest) -> tuple[Manifest, Manifest, Manifest]:
        """The (train, val, test) manifests, in the split's order.

        Raises:
            DataError: Some keys of the split are not in the manifest (images dropped or
                renamed since the split was made).
        """
        self.validate()
        index = dict(zip(unique_keys(manifest), manifest.records))
        missing = [k for keys in self.parts().values() for k in keys if k not in index]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise DataError(
                f"{self._where()} does not match the manifest: {len(missing)} key(s) are "
                f"missing from it ({shown}). Restore those images, or rebuild the split "
                "from this manifest with make_splits.")
        return tuple(Manifest([index[k] for k in keys]) for keys in self.parts().values())

    def save(self, path: str | os.PathLike) -> None:
        """Write a readable JSON file: settings and counts first, then one key a line."""
        doc = {"protocol": self.protocol, "seed": self.seed,
               "ratios": None if self.ratios is None else list(self.ratios),
               "datasets": self.datasets, "notes": self.notes, "options": self.options,
               "counts": self.counts(), **self.parts()}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Split":
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"Split file {path} cannot be read ({e}). Check the path, or "
                            "write it again with Split.save.") from e
        if not isinstance(doc, dict) or any(not isinstance(doc.get(p), list) for p in PARTS):
            raise DataError(f"Split file {path} needs lists 'train', 'val' and 'test'. "
                            "Write it with Split.save.")
        ratios = doc.get("ratios")
        split = cls(*(list(map(str, doc[p])) for p in PARTS),
                    protocol=doc.get("protocol", "random"), seed=doc.get("seed"),
                    ratios=None if ratios is None else tuple(float(r) for r in ratios),
                    datasets=list(doc.get("datasets", [])), notes=doc.get("notes", ""),
                    options=dict(doc.get("options", {})), source=str(path))
        split.validate()
        return split

    def _where(self) -> str:
        return f"Split file {self.source}" if self.source else f"Split ({self.protocol})"


def record_key(r: Record) -> str:
    return f"{r.dataset}/{r.name}"


def unique_keys(manifest: Manifest) -> list[str]:
    keys = manifest.keys()
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})[:5]
        raise DataError(f"The manifest lists {dup} more than once; a split needs unique "
                        "dataset/name keys. Remove the duplicate rows.")
    return keys
