"""Every dataset's facts, as data: one entry per release, no class per dataset.

A parser (see :mod:`mixiqa.data.parsers`) turns a release folder into manifest rows;
the catalog says which parser, which files, which score range and direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mixiqa.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about one IQA dataset release.

    Attributes:
        name: Catalog key, lower case (``clive``).
        title: Human-readable name.
        kind: ``synthetic`` (distorted references), ``authentic`` (in-the-wild) or
            ``generated`` (AI-generated images).
        score_files: The official score files, relative to the release root.
        image_dir: Where the images live, relative to the release root.
        score_range: Theoretical (or, where none is published, observed) score range.
        higher_better: False for DMOS-style scores.
        n_images: Number of rated images in the full release.
        score_name: ``MOS`` or ``DMOS`` (as the release calls it).
        content_groups: What the ``group`` column holds, if anything.
        labels: Extra labels the release provides (``scene``, ``distortion``).
        official_split: Whether the release fixes a train/test split.
        options: Parser options a user may set, with their defaults.
        citation: Short citation to credit the dataset's authors.
    """

    name: str
    title: str
    kind: str
    score_files: tuple[str, ...]
    image_dir: str
    score_range: tuple[float, float]
    higher_better: bool
    n_images: int
    score_name: str = "MOS"
    content_groups: str | None = None
    labels: tuple[str, ...] = ()
    official_split: bool = False
    options: dict = field(default_factory=dict)
    citation: str = ""

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_better else "lower is better"


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def _add(info: DatasetInfo) -> None:
    DATASETS.register(info.name, info)


_add(DatasetInfo(
    name="live", title="LIVE Image Quality Assessment Database, release 2", kind="synthetic",
    score_files=("dmos_realigned.mat", "refnames_all.mat"), image_dir=".",
    score_range=(-2.6, 114.4), higher_better=False, n_images=779, score_name="DMOS",
    content_groups="reference image", labels=("distortion",),
    citation="Sheikh, Sabir, Bovik. IEEE TIP 2006"))
_add(DatasetInfo(
    name="csiq", title="CSIQ", kind="synthetic",
    score_files=("csiq.DMOS.xlsx",), image_dir="dst_imgs",
    score_range=(0.0, 1.0), higher_better=False, n_images=866, score_name="DMOS",
    content_groups="reference image", labels=("distortion",),
    citation="Larson, Chandler. J. Electronic Imaging 2010"))
_add(DatasetInfo(
    name="tid2013", title="TID2013", kind="synthetic",
    score_files=("mos_with_names.txt", "mos_std.txt"), image_dir="distorted_images",
    score_range=(0.0, 9.0), higher_better=True, n_images=3000,
    content_groups="reference image", labels=("distortion",),
    citation="Ponomarenko et al. Signal Processing: Image Communication 2015"))
_add(DatasetInfo(
    name="kadid10k", title="KADID-10k", kind="synthetic",
    score_files=("dmos.csv",), image_dir="images",
    score_range=(1.0, 5.0), higher_better=True, n_images=10125, score_name="DMOS",
    content_groups="reference image", labels=("distortion",),
    citation="Lin, Hosu, Saupe. QoMEX 2019"))
_add(DatasetInfo(
    name="bid", title="BID (Blurred Image Database)", kind="authentic",
    score_files=("DatabaseGrades.xls",), image_dir="ImageDatabase",
    score_range=(0.0, 5.0), higher_better=True, n_images=586,
    citation="Ciancio et al. IEEE TIP 2011"))
_add(DatasetInfo(
    name="clive", title="LIVE In the Wild Image Quality Challenge (CLIVE)", kind="authentic",
    score_files=("Data/AllImages_release.mat", "Data/AllMOS_release.mat",
                 "Data/AllStdDev_release.mat"), image_dir="Images",
    score_range=(0.0, 100.0), higher_better=True, n_images=1162,
    citation="Ghadiyaram, Bovik. IEEE TIP 2016"))
_add(DatasetInfo(
    name="koniq", title="KonIQ-10k", kind="authentic",
    score_files=("koniq10k_scores_and_distributions.csv",), image_dir="1024x768",
    score_range=(1.0, 5.0), higher_better=True, n_images=10073, official_split=True,
    options={"column": "MOS"},  # or "MOS_zscore" (range 0-100)
    citation="Hosu, Lin, Sziranyi, Saupe. IEEE TIP 2020"))
_add(DatasetInfo(
    name="spaq", title="SPAQ (Smartphone Photography Attribute and Quality)", kind="authentic",
    score_files=("Annotations/MOS and Image attribute scores.xlsx",
                 "Annotations/Scene category labels.xlsx"), image_dir="TestImage",
    score_range=(0.0, 100.0), higher_better=True, n_images=11125, labels=("scene",),
    citation="Fang et al. CVPR 2020"))
_add(DatasetInfo(
    name="cid2013", title="CID2013 (Camera Image Database)", kind="authentic",
    score_files=("CID2013 data - version 12112014.xlsx",), image_dir=".",
    score_range=(-10.0, 90.0), higher_better=True, n_images=474,
    content_groups="scene (photographed content)", labels=("scene",),
    citation="Virtanen et al. IEEE TIP 2015"))
_add(DatasetInfo(
    name="pipal", title="PIPAL (training part)", kind="synthetic",
    score_files=("Train_Label/*.txt",), image_dir="Train_Dist",
    score_range=(900.0, 1900.0), higher_better=True, n_images=23200, score_name="Elo",
    content_groups="reference image", labels=("distortion",),
    citation="Jinjin et al. ECCV 2020"))
_add(DatasetInfo(
    name="agiqa3k", title="AGIQA-3K", kind="generated",
    score_files=("data.csv",), image_dir="images",
    score_range=(0.0, 5.0), higher_better=True, n_images=2982,
    content_groups="text prompt (shared by the generators)", labels=("scene",),
    options={"column": "quality"},  # or "align" (text-image alignment)
    citation="Li et al. IEEE TCSVT 2023"))
_add(DatasetInfo(
    name="biq2021", title="BIQ2021", kind="authentic",
    score_files=("Train (Images and MOS).csv", "Test (Images and MOS).csv"), image_dir="Images",
    score_range=(0.0, 1.0), higher_better=True, n_images=12000, official_split=True,
    labels=("scene (subset ss01/ss02/ss03)",),
    citation="Ahmed, Asif. J. Electronic Imaging 2022"))
_add(DatasetInfo(
    name="csv", title="Generic CSV/JSON manifest (any other dataset)", kind="any",
    score_files=("<your file>.csv or .json",), image_dir=".",
    score_range=(0.0, 1.0), higher_better=True, n_images=0,
    options={"file": None, "name": None, "score_range": None, "higher_better": True},
    citation=""))


def dataset_info(name: str) -> DatasetInfo:
    """Facts of a dataset by catalog name; unknown names get a "did you mean" error."""
    return DATASETS.get(name)
