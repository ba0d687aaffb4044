"""Encoders: preprocessing, Gram vectors, the feature cache, and the paper encoders' loading code run on
tiny random-weight models of the same classes (never real weights)."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from lycobench.config import CONF_DIR
from lycobench.metric_encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_weights,
    gram_vector,
    image_features,
    letterbox,
    load_encoder,
    text_features,
    to_tensor,
)

TINY = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "encoders" / "tiny.yaml"))
TINY["device"] = "cpu"


def pictures(n: int, size=(32, 32), seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)) for _ in range(n)]


def save_pngs(folder, images) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        paths.append(folder / f"{i}.png")
        im.save(paths[-1])
    return paths


# --- preprocessing and Gram vectors ------------------------------------------------------------------


def test_letterbox_pads_the_short_side_with_black_and_resizes_squares():
    im = Image.new("RGB", (40, 20), (200, 100, 50))
    out = np.asarray(letterbox(im, 32))
    assert out.shape == (32, 32, 3)
    assert (out[:7] == 0).all() and (out[-7:] == 0).all(), "black bars above and below"
    assert (out[10:22, :, 0] == 200).all(), "content centred, full width"
    sq = letterbox(Image.new("RGB", (64, 64), (1, 2, 3)), 32)
    assert sq.size == (32, 32) and np.asarray(sq)[0, 0].tolist() == [1, 2, 3]


def test_gram_vector_distance_is_the_sum_of_squared_frobenius_distances():
    a = [torch.randn(2, 3, 4, 5), torch.randn(2, 6, 2, 2)]
    v = gram_vector(a).double().numpy()

    def grams(i):
        out = []
        for t in a:
            f = t[i].reshape(t.shape[1], -1).double().numpy()
            out.append(f @ f.T / f.size)  # psi psi^T / (c h w)
        return out

    g0, g1 = grams(0), grams(1)
    expected = sum(np.sum((x - y) ** 2) for x, y in zip(g0, g1))
    assert np.sum((v[0] - v[1]) ** 2) == pytest.approx(expected, rel=1e-5)
    assert v.shape == (2, 3 * 4 // 2 + 6 * 7 // 2)


def test_style_taps_but_the_last_are_read_after_the_in_place_relu_that_follows_them():
    """The paper's code reads VGG's conv1_1-conv4_1 after their in-place ReLU (the tap aliases the tensor the
    ReLU rectifies) and conv5_1 before; lycobench keeps that. A change (a clone at the tap, a ReLU that is
    not in place) would fail here."""
    from lycobench.metric_encoders.base import short_side

    enc = load_encoder(TINY, "style")  # taps [0, 5, 8] of a VGG make_layers stack: conv, ReLU(inplace), ...
    ims = pictures(2)
    x = torch.stack([to_tensor(short_side(im, enc.size), enc.mean, enc.std) for im in ims])
    h, raw = x, []
    with torch.no_grad():
        for n, layer in enumerate(enc.layers[: enc.taps[-1] + 1]):
            h = layer(h)
            if n in enc.taps:
                raw.append(h.clone())  # the conv output as it leaves the conv
    after = [torch.relu(a) for a in raw[:-1]] + raw[-1:]
    got = enc.encode_images(ims)
    assert np.allclose(got, gram_vector(after).numpy(), atol=1e-6)
    assert not np.allclose(got, gram_vector(raw).numpy(), atol=1e-6)


# --- tiny encoders and the cache ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ["clip", "dino", "style", "oracle"])
def test_tiny_encoders_encode_images_of_any_shape(role):
    enc = load_encoder(TINY, role)
    feats = enc.encode_images(pictures(3) + pictures(2, size=(48, 24)))
    assert feats.shape[0] == 5 and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert enc.key and enc.description


def test_feature_cache_computes_once_and_reads_back_identical_bits(tmp_path, monkeypatch):
    enc = load_encoder(TINY, "dino")
    paths = save_pngs(tmp_path / "img", pictures(5))
    calls = []
    original = enc.encode_images
    monkeypatch.setattr(enc, "encode_images", lambda ims: calls.append(len(ims)) or original(ims))
    first = image_features(enc, paths, tmp_path / "cache", batch_size=2)
    assert calls == [2, 2, 1]
    again = image_features(enc, paths[::-1], tmp_path / "cache")
    assert calls == [2, 2, 1], "nothing recomputed"
    assert again[::-1].tobytes() == first.tobytes()
    # another encoder configuration gets its own cache folder
    other = load_encoder({**TINY, "dino": {**TINY["dino"], "init_seed": 1}}, "dino")
    assert other.key != enc.key
    texts = text_features(load_encoder(TINY, "clip"), ["a", "b", "a"], tmp_path / "cache")
    assert sorted(texts) == ["a", "b"] and texts["a"].shape == (32,)


def test_evaluation_reads_images_by_the_training_image_policy(tmp_path):
    """A transparent corner is white and an EXIF-rotated photo is upright, as training reads them; such
    files get their own cache keys, plain RGB files keep theirs."""
    from lycobench.metric_encoders import image_keys

    enc = load_encoder(TINY, "dino")
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:24, 8:24] = (200, 30, 30, 255)  # an opaque red square, the rest transparent
    on_white = rgba[..., :3].copy()
    on_white[rgba[..., 3] == 0] = 255
    tall = pictures(1, size=(24, 40))[0]  # 24 wide, 40 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to be upright": stored lying down, 40 wide
    (tmp_path / "img").mkdir()
    tall.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "img" / "phone.jpg", exif=exif, quality=100)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "img" / "cut.png")
    plain = save_pngs(tmp_path / "plain", [Image.fromarray(on_white)])
    paths = [tmp_path / "img" / "cut.png", tmp_path / "img" / "phone.jpg"]
    feats = image_features(enc, paths + plain, tmp_path / "cache")
    assert np.array_equal(feats[0], feats[2])  # the transparent PNG is read as the same picture on white
    with Image.open(paths[1]) as im:
        from lycobench.image_policy import to_rgb

        upright = to_rgb(im)
    assert upright.size == (24, 40) and np.allclose(feats[1], enc.encode_images([upright])[0], atol=1e-6)
    keys = image_keys(paths + plain)
    from lycobench.metric_encoders.load import POLICY_TAG

    assert keys[0].endswith(POLICY_TAG) and keys[1].endswith(POLICY_TAG) and "-" not in keys[2]


def test_oracle_features_decode_to_the_oracles_own_predictions():
    enc = load_encoder(TINY, "oracle")
    ims = pictures(4)
    pred = enc.decode(enc.encode_images(ims))
    direct = enc.oracle.predict(np.stack([np.asarray(im) for im in ims]))
    assert [p["leaf"] for p in pred] == direct["leaf"]
    assert [p["shapes"] for p in pred] == direct["shapes"]
    assert set(pred[0]) == set(direct)


# --- the paper encoders' loading code on tiny random models of the same classes -----------------------


def test_open_clip_paper_path_loads_a_custom_config_and_weights(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    model_cfg = TINY["clip"]["model_cfg"]
    (tmp_path / "tinyclip.json").write_text(json.dumps(model_cfg))
    open_clip.add_model_config(tmp_path / "tinyclip.json")
    torch.manual_seed(5)
    ref, _, preprocess = open_clip.create_model_and_transforms("tinyclip", pretrained=None)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "w.safetensors"))
    cfg = {
        "name": "paper",
        "device": "cpu",
        "clip": {
            "kind": "open_clip",
            "model": "ViT-L-14",
            "model_config": str(tmp_path / "tinyclip.json"),
            "path": str(tmp_path / "w.safetensors"),
        },
    }
    enc = load_encoder(cfg, "clip")
    ims = pictures(2)
    with torch.no_grad():
        want = ref.eval().encode_image(torch.stack([preprocess(im) for im in ims])).numpy()
        want_t = ref.encode_text(open_clip.get_tokenizer("tinyclip")(["a red circle"])).numpy()
    np.testing.assert_allclose(enc.encode_images(ims), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(enc.encode_texts(["a red circle"]), want_t, rtol=1e-5, atol=1e-6)
    assert enc.identity["clip"]["weights"]  # the weights are part of the cache key

    # open_clip's folder layout (what the world CLIP-style model ships as)
    folder = tmp_path / "clipdir"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    save_file(
        {k: v.contiguous() for k, v in ref.state_dict().items()}, str(folder / "open_clip_model.safetensors")
    )
    enc2 = load_encoder(
        {"name": "world", "device": "cpu", "clip": {"kind": "open_clip", "path": str(folder)}}, "clip"
    )
    np.testing.assert_allclose(enc2.encode_images(ims), want, rtol=1e-5, atol=1e-6)


def test_dinov2_paper_path_loads_a_save_pretrained_folder(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(3)
    small = Dinov2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=224, patch_size=14
    )
    ref = Dinov2Model(small).eval()
    ref.save_pretrained(tmp_path / "dino")
    cfg = {
        "name": "paper",
        "device": "cpu",
        "dino": {"kind": "dinov2", "image_size": 224, "path": str(tmp_path / "dino")},
    }
    enc = load_encoder(cfg, "dino")
    ims = pictures(2, size=(64, 64)) + pictures(1, size=(80, 40))
    x = torch.stack([to_tensor(letterbox(im, 224), IMAGENET_MEAN, IMAGENET_STD) for im in ims])
    with torch.no_grad():
        want = ref(pixel_values=x).pooler_output.numpy()
    np.testing.assert_allclose(enc.encode_images(ims), want, rtol=1e-5, atol=1e-6)
    assert want.shape == (3, 32)


def test_vgg19_paper_path_loads_torchvisions_state_dict_format(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(7)
    features = make_layers(cfgs["E"]).eval()  # VGG-19's feature stack, random weights
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp_path / "vgg19.pth")
    taps = [0, 5, 10, 19, 28]
    cfg = {
        "name": "paper",
        "device": "cpu",
        "style": {"kind": "vgg19", "taps": taps, "size": 32, "path": str(tmp_path / "vgg19.pth")},
    }
    enc = load_encoder(cfg, "style")
    ims = pictures(2, size=(48, 32))
    x = torch.stack(
        [to_tensor(im.resize((48, 32), Image.BICUBIC), IMAGENET_MEAN, IMAGENET_STD) for im in ims]
    )
    acts, h = [], x
    with torch.no_grad():
        for i, layer in enumerate(features[:29]):
            h = layer(h)
            if i in taps:
                acts.append(h)
    want = gram_vector(acts).numpy()
    np.testing.assert_allclose(enc.encode_images(ims), want, rtol=1e-4, atol=1e-7)
    assert [type(features[t]).__name__ for t in taps] == ["Conv2d"] * 5, "taps are conv outputs, before ReLU"

    torch.save({"classifier.0.weight": torch.zeros(2, 2)}, tmp_path / "not_vgg.pth")
    with pytest.raises(ValueError, match="not a VGG-19 state dict"):
        load_encoder({**cfg, "style": {**cfg["style"], "path": str(tmp_path / "not_vgg.pth")}}, "style")


def test_missing_paper_weights_give_one_error_naming_every_file():
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "encoders" / "paper.yaml"))
    cfg["dino"]["path"] = "/nowhere/dinov2-large"
    with pytest.raises(FileNotFoundError) as e:
        check_weights(cfg, ["clip", "dino", "style", "oracle"])
    msg = str(e.value)
    for text in (
        "encoders.clip.path: not set",
        "/nowhere/dinov2-large does not exist",
        "encoders.style.path",
        "never downloads",
    ):
        assert text in msg
    assert "vgg19-dcbb9e9d.pth" in msg and "save_pretrained" in msg


def test_world_encoders_name_the_files_they_wait_for():
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "encoders" / "world.yaml"))
    missing = [r for r in ("clip", "dino") if not (CONF_DIR.parent / cfg[r]["path"]).exists()]
    if not missing:
        pytest.skip("the world encoders have shipped")
    with pytest.raises(FileNotFoundError) as e:
        load_encoder(cfg, missing[0])
    assert f"lycobench/world/weights/{missing[0]}" in str(e.value)


def test_world_kinds_load_the_world_formats_with_the_worlds_preprocessing(tmp_path):
    """encoders=world reads an open_clip folder and a Dinov2Model folder through the world's own loaders;
    shown here on random models of the world's layout, compared with those loaders directly."""
    import open_clip
    from safetensors.torch import save_file
    from transformers import Dinov2Config, Dinov2Model

    from lycobench.world.clip_dino import load_world_clip, load_world_dino

    model_cfg = TINY["clip"]["model_cfg"]
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {"size": 32}})
    )
    (tmp_path / "worldclip.json").write_text(json.dumps(model_cfg))
    open_clip.add_model_config(tmp_path / "worldclip.json")
    torch.manual_seed(1)
    ref, _, _ = open_clip.create_model_and_transforms("worldclip", pretrained=None)
    save_file(
        {k: v.contiguous() for k, v in ref.state_dict().items()},
        str(tmp_path / "clip" / "open_clip_model.safetensors"),
    )
    Dinov2Model(Dinov2Config(**TINY["dino"]["config"])).save_pretrained(tmp_path / "dino")

    cfg = {"name": "world", "device": "cpu", "clip": {"kind": "world_clip", "path": str(tmp_path / "clip")},
           "dino": {"kind": "world_dino", "path": str(tmp_path / "dino")}}  # fmt: skip
    ims = pictures(3, size=(64, 64))
    arrays = np.stack([np.asarray(im) for im in ims])
    clip, dino = load_encoder(cfg, "clip"), load_encoder(cfg, "dino")
    np.testing.assert_array_equal(
        clip.encode_images(ims), load_world_clip(tmp_path / "clip").encode_images(arrays)
    )
    np.testing.assert_array_equal(
        dino.encode_images(ims), load_world_dino(tmp_path / "dino").encode_images(arrays)
    )
    np.testing.assert_array_equal(
        clip.encode_texts(["a red circle"]), load_world_clip(tmp_path / "clip").encode_texts(["a red circle"])
    )
    assert clip.role == "clip" and dino.role == "dino" and clip.key != dino.key


def test_the_evaluation_key_follows_the_feature_code_version():
    """Bumping FEATURES_VERSION (or a library that computes features) must re-evaluate, not only re-key
    the feature cache: encoders_identity, which the evaluate key hashes, carries both."""
    from lycobench.metric_encoders import FEATURES_VERSION, encoders_identity

    ident = encoders_identity(TINY)
    assert (
        ident["features"]["version"] == FEATURES_VERSION and "torchvision" in ident["features"]["libraries"]
    )
