import json
import pickle
import struct

import numpy as np
import pytest
import torch

from engines import FORMATS, ModelFileError, ModelMeta, load_engine, read_meta
from engines.config import CropConfig, ModelConfig
from engines.contract import TRT_MAGIC, pack_engine, unpack_engine
from engines.labels import class_names
from engines.models import probabilities


def test_format_table_names_a_backend_per_suffix():
    assert set(FORMATS) == {".pt", ".onnx", ".engine"}
    for suffix, fmt in FORMATS.items():
        assert fmt.suffix == suffix and ":" in fmt.backend


def test_meta_roundtrip_and_label_check():
    meta = ModelMeta(
        arch="resnet18", head="multi", input_height=224, input_width=168, source_sha256="ab" * 32
    )
    again = ModelMeta.from_json(meta.to_json())
    assert again == meta and again.input_size == (224, 168) and list(again.labels) == class_names()
    other = meta.to_dict() | {"labels": ["cat", "dog"]}
    with pytest.raises(ModelFileError, match="other labels"):
        ModelMeta.from_dict(other, "x.onnx")


def test_meta_with_a_bad_crop_geometry_is_refused():
    d = ModelMeta(arch="mobilenet_v2").to_dict()
    d["crop"] = d["crop"] | {"border": "mirror"}
    with pytest.raises(ModelFileError, match=r"m.onnx: crop.*border = 'mirror' is not one of"):
        ModelMeta.from_dict(d, "m.onnx")
    d["crop"] = {"width": -3}
    with pytest.raises(ModelFileError, match=r"width = -3 is out of range"):
        ModelMeta.from_dict(d, "m.onnx")


@pytest.mark.parametrize(
    "change, says",
    [
        ({"input_height": "256"}, "input_height = '256' is not int"),
        ({"input_width": 192.0}, "input_width = 192.0 is not int"),
        ({"mean": [0.5, 0.5]}, r"mean = \[0.5, 0.5\] is not 3 numbers"),
        ({"std": [0.2, "x", 0.2]}, "std = .* is not 3 numbers"),
        ({"head": True}, "head = True is not str"),
    ],
)
def test_meta_fields_of_the_wrong_type_are_refused_when_the_file_loads(change, says):
    d = ModelMeta(arch="mobilenet_v2").to_dict() | change
    with pytest.raises(
        ModelFileError, match=f"m.onnx: its mask-monitor metadata is .*malformed \\({says}\\)"
    ):
        ModelMeta.from_dict(d, "m.onnx")


def test_engine_header_roundtrip():
    meta = ModelMeta(arch="mobilenet_v2")
    blob = pack_engine(meta, b"PLANBYTES")
    m2, plan = unpack_engine(blob)
    assert m2 == meta and plan == b"PLANBYTES"
    with pytest.raises(ModelFileError, match="no header"):
        unpack_engine(b"raw tensorrt plan without our header")
    with pytest.raises(ModelFileError, match="x.engine: truncated header"):
        unpack_engine(blob[:40], "x.engine")


def test_read_meta_of_an_engine_file_reads_only_its_header(tmp_path):
    meta = ModelMeta(arch="mobilenet_v2", precision="fp16")
    path = tmp_path / "m.engine"
    path.write_bytes(pack_engine(meta, b"PLAN" * 1000))
    assert read_meta(path) == meta
    path.write_bytes(pack_engine(meta, b"")[:30])
    with pytest.raises(ModelFileError, match="m.engine: truncated header"):
        read_meta(path)
    path.write_bytes(b"a plan built by trtexec")
    with pytest.raises(ModelFileError, match="m.engine: not a mask-monitor TensorRT engine"):
        read_meta(path)


def test_torch_backend_dynamic_batch(tiny_checkpoint, tiny_multi_checkpoint):
    for path in (tiny_checkpoint, tiny_multi_checkpoint):
        eng = load_engine(path, device="cpu")
        assert read_meta(path) == eng.meta
        h, w = eng.meta.input_size
        rng = np.random.default_rng(0)
        for n in (1, 5):
            probs = eng.infer(rng.standard_normal((n, 3, h, w)).astype(np.float32))
            assert probs.shape == (n, 18)
            assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
        # different inputs give different outputs (the weights are not trivial)
        p = eng.infer(rng.standard_normal((2, 3, h, w)).astype(np.float32))
        assert np.abs(p[0] - p[1]).max() > 1e-3
        # classify() takes BGR crops of any size, in chunks
        crops = [rng.integers(0, 255, (512, 384, 3), dtype=np.uint8) for _ in range(5)]
        assert eng.classify(crops, batch_size=2).shape == (5, 18)
        with pytest.raises(ValueError, match="expected a batch"):
            eng.infer(np.zeros((1, 3, h + 1, w), np.float32))


def test_multi_head_probabilities_are_a_product():
    logits = torch.randn(4, 8)
    p = probabilities(logits, "multi")
    pm = torch.softmax(logits[:, :3], 1)
    pg = torch.softmax(logits[:, 3:5], 1)
    pa = torch.softmax(logits[:, 5:], 1)
    assert torch.allclose(p.sum(1), torch.ones(4))
    assert torch.allclose(p[:, 2 * 6 + 1 * 3 + 0], pm[:, 2] * pg[:, 1] * pa[:, 0])
    # marginal over gender and age gives back the mask head
    assert torch.allclose(p.reshape(4, 3, 6).sum(2), pm, atol=1e-6)


def test_model_file_errors_are_clear(tmp_path):
    with pytest.raises(ModelFileError, match="unknown suffix '.pth'"):
        load_engine(tmp_path / "m.pth")
    with pytest.raises(ModelFileError, match="does not exist"):
        load_engine(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx file" * 10)
    with pytest.raises(ModelFileError, match="junk.onnx"):
        load_engine(junk)
    notckpt = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, notckpt)
    with pytest.raises(ModelFileError, match="not a mask-monitor checkpoint"):
        load_engine(notckpt)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoint_with_code_is_refused_not_unpickled(tmp_path, capsys):
    p = tmp_path / "evil.pt"
    torch.save({"meta": {}, "model": {}, "x": _Evil()}, p, pickle_module=pickle)
    with pytest.raises(ModelFileError, match="refusing to unpickle"):
        load_engine(p)
    assert "code ran" not in capsys.readouterr().out


def test_engine_file_with_other_labels_is_refused(tmp_path):
    meta = ModelMeta(arch="mobilenet_v2")
    d = meta.to_dict() | {"labels": [str(i) for i in range(10)]}
    blob = json.dumps(d).encode()
    p = tmp_path / "other.engine"
    p.write_bytes(TRT_MAGIC + struct.pack("<I", len(blob)) + blob + b"plan")
    with pytest.raises(ModelFileError, match="other labels"):
        read_meta(p)


def test_model_config_and_file_metadata_map_both_ways():
    model = ModelConfig(arch="resnet18", head="multi", input_height=64, input_width=48, mean=(0.5,) * 3)
    crop = CropConfig(margin=0.3)
    meta = ModelMeta.for_model(model, crop, age_old_threshold=58)
    assert (meta.arch, meta.head, meta.input_size, meta.mean) == ("resnet18", "multi", (64, 48), (0.5,) * 3)
    assert meta.crop == crop and meta.age_old_threshold == 58
    back = meta.model_config(ModelConfig(dropout=0.5))
    assert back == ModelConfig(
        arch="resnet18", head="multi", input_height=64, input_width=48, mean=(0.5,) * 3, dropout=0.5
    )
