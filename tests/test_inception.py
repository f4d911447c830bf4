"""The FID Inception-v3 port and the .pth reader against pytorch-fid's golden outputs (no torch).

``benchmarks/inception_parity.py`` ran pytorch-fid 0.3.0 (torch 2.14.1) on seeded weights and
wrote ``tests/golden/``. Here the same weights are drawn again with NumPy, converted with
``params_from_torch`` and run through ``jaxgan.inception``: pool3 features and logits agree
to ~2e-6 absolute, ~5e-7 relative to the outputs' scale (float32 rounding). The network is
compiled once (one batch of the six test images) plus once for ``batched_outputs``.
"""

import importlib.util
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from jaxgan import inception, metrics, pth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden")
RTOL = 1e-4  # of the largest output; reached: ~5e-7


def _parity_script():
    path = os.path.join(ROOT, "benchmarks", "inception_parity.py")
    spec = importlib.util.spec_from_file_location("inception_parity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports NumPy only; torch only in its main()
    return module


PARITY = _parity_script()


@pytest.fixture(scope="module")
def golden():
    with np.load(os.path.join(GOLDEN, "inception_parity.npz")) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def state_dict(golden):
    shapes = inception.torch_state_dict_shapes()
    assert int(golden["seed_procedure_version"]) == PARITY.SEED_PROCEDURE_VERSION
    assert json.loads(str(golden["state_dict_shapes"])) == {k: list(v) for k, v in shapes.items()}
    values = PARITY.random_state_dict(shapes, int(golden["seed"]))
    assert PARITY.sha256_of(values) == str(golden["weights_sha256"]), "NumPy drew other weights"
    return values


@pytest.fixture(scope="module")
def variables(state_dict):
    return inception.params_from_torch(state_dict)


@pytest.fixture(scope="module")
def images(golden):
    out = PARITY.parity_images(int(golden["seed"]))
    assert PARITY.sha256_of(out) == str(golden["images_sha256"])
    assert list(out) == list(golden["groups"])
    return out


@pytest.fixture(scope="module")
def preprocessed(images):
    return np.concatenate([np.asarray(inception.preprocess(batch)) for batch in images.values()])


@pytest.fixture(scope="module")
def outputs(variables, preprocessed):
    out = inception.network_outputs(variables, preprocessed)
    return {name: np.asarray(value) for name, value in out.items()}


def _assert_close(actual, expected, rtol=RTOL):
    scale = float(np.abs(expected).max())
    assert actual.shape == expected.shape and actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# ============================================================================
# The network
# ============================================================================


def test_parameter_count(golden, variables):
    import jax

    count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables["params"]))
    stats = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables["batch_stats"]))
    assert count == inception.NUM_PARAMS == int(golden["num_params"]) == 23_850_960
    assert int(golden["num_params_torchvision_1000"]) == 23_834_568  # + 8 classes: 8 x 2049
    assert count + stats == int(golden["num_state_floats"]) == 23_885_392


def test_resize_and_scale_match_interpolate(golden, preprocessed):
    """F.interpolate(bilinear, align_corners=False) then 2x - 1, enlarging and shrinking."""
    step = PARITY.GRID_STEP
    grid = preprocessed[:, ::step, ::step]
    np.testing.assert_allclose(grid, golden["resized_grid"], rtol=0, atol=1e-6)
    assert preprocessed.shape == (6, 299, 299, 3)


def test_input_range_and_grayscale(images):
    gray = images["gray28"]
    from_jaxgan = inception.preprocess(2.0 * gray - 1.0, input_range=(-1.0, 1.0))
    as_rgb = inception.preprocess(np.repeat(gray, 3, axis=-1))
    np.testing.assert_allclose(np.asarray(from_jaxgan), np.asarray(as_rgb), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="1 or 3"):
        inception.preprocess(np.zeros((1, 8, 8, 2)))


@pytest.mark.parametrize("name", ["pool3", "logits", "logits_unbiased"])
def test_outputs_match_pytorch_fid(golden, outputs, name):
    expected = golden[name]
    _assert_close(outputs[name], expected)
    assert expected.std(axis=0).mean() > 0.01  # the images give different outputs
    assert (expected != 0).mean() > 0.5  # and the seeded network is not dead


def test_unbiased_logits_drop_only_the_bias(outputs, state_dict):
    np.testing.assert_allclose(
        outputs["logits"] - outputs["logits_unbiased"],
        np.broadcast_to(state_dict["fc.bias"], outputs["logits"].shape),
        rtol=0,
        atol=1e-6,
    )


def test_batched_outputs_in_jaxgan_range(golden, variables, images):
    """The whole jitted path: [-1, 1] images, batches of 2 (the last one padded)."""
    rgb = images["rgb32"]
    out = inception.batched_outputs(variables, 2.0 * rgb - 1.0, batch_size=2, input_range=(-1, 1))
    for name in ("pool3", "logits", "logits_unbiased"):
        _assert_close(out[name], golden[name][: len(rgb)])


def test_fid_formula_matches_pytorch_fid(golden):
    f1, f2 = PARITY.fid_feature_sets(int(golden["seed"]))
    assert PARITY.sha256_of({"f1": f1, "f2": f2}) == str(golden["fid_features_sha256"])
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    sigma1, sigma2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    fid = metrics.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert fid == pytest.approx(float(golden["fid"]), rel=1e-9)
    assert metrics.frechet_distance_from_features(f1, f2) == pytest.approx(fid, rel=1e-12)


# ============================================================================
# params_from_torch
# ============================================================================


def test_params_from_torch_refuses_missing_and_unexpected_keys(state_dict):
    partial = dict(state_dict)
    del partial["Mixed_6c.branch7x7_2.conv.weight"]
    with pytest.raises(ValueError, match=r"1 missing keys \['Mixed_6c.branch7x7_2.conv.weight'\]"):
        inception.params_from_torch(partial)
    extra = {**state_dict, "AuxLogits.fc.weight": np.zeros((1008, 768), np.float32)}
    with pytest.raises(ValueError, match=r"unexpected keys.*AuxLogits\.fc\.weight"):
        inception.params_from_torch(extra)


def test_params_from_torch_refuses_a_wrong_shape(state_dict):
    wrong = {**state_dict, "fc.weight": np.zeros((1000, 2048), np.float32)}
    with pytest.raises(ValueError, match=r"fc.weight \(1000, 2048\) \(expected \(1008, 2048\)\)"):
        inception.params_from_torch(wrong)


def test_params_from_torch_ignores_num_batches_tracked(state_dict):
    counters = {"Conv2d_1a_3x3.bn.num_batches_tracked": np.array(0, np.int64)}
    variables = inception.params_from_torch({**state_dict, **counters})
    kernel = variables["params"]["Conv2d_1a_3x3"]["conv"]["kernel"]
    np.testing.assert_array_equal(
        kernel, state_dict["Conv2d_1a_3x3.conv.weight"].transpose(2, 3, 1, 0)
    )
    with pytest.raises(ValueError, match="unexpected keys"):
        inception.params_from_torch({**state_dict, "fc.num_batches_tracked": np.array(0)})


# ============================================================================
# jaxgan.pth
# ============================================================================


@pytest.mark.parametrize("name", ["tiny_legacy.pth", "tiny_zip.pth"])
def test_read_state_dict_gives_every_value_and_dtype(name):
    with open(os.path.join(GOLDEN, "tiny_pth.json")) as f:
        expected = json.load(f)
    state = pth.read_state_dict(os.path.join(GOLDEN, name))
    assert list(state) == list(expected)
    for key, want in expected.items():
        got = state[key]
        assert isinstance(got, np.ndarray) and got.dtype.isnative, key
        assert (str(got.dtype), list(got.shape)) == (want["dtype"], want["shape"]), key
        values = got.astype(np.float64) if want["dtype"] == "bfloat16" else got
        np.testing.assert_array_equal(values.reshape(-1), np.array(want["values"], values.dtype))
    np.testing.assert_array_equal(state["transposed"], state["base"].T)
    np.testing.assert_array_equal(state["column"], state["base"][:, 2])
    assert np.signbit(state["double"][1, 1])  # -0.0 kept


def _zip_pth(path, data_pkl: bytes, records: dict[str, bytes] | None = None) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        for name, raw in (records or {}).items():
            archive.writestr(f"archive/{name}", raw)
    return str(path)


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_a_pickle_calling_a_disallowed_global_is_refused(tmp_path, layout):
    marker = tmp_path / "the_command_ran"
    payload = pickle.dumps({"weight": _RunsAShellCommand(marker)}, protocol=2)
    if layout == "zip":
        path = _zip_pth(tmp_path / "evil.pth", payload)
    else:
        path = tmp_path / "evil.pth"
        path.write_bytes(payload)
    with pytest.raises(ValueError, match=r"refused to unpickle the global (posix|nt)\.system"):
        pth.read_state_dict(path)
    assert not marker.exists()


def _tensor_pickle(numel: int, offset: int, size: tuple, stride: tuple) -> bytes:
    """By hand, the pickle torch writes for ``{"w": float32 tensor}`` (protocol 2)."""

    def text(s):
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    def tup(values):
        return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"

    persistent_id = b"((" + text("storage") + b"ctorch\nFloatStorage\n" + text("0")
    persistent_id += text("cpu") + b"J" + struct.pack("<i", numel) + b"tQ"
    args = persistent_id + b"J" + struct.pack("<i", offset) + tup(size) + tup(stride)
    return b"\x80\x02}" + text("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"\x89}tRs."


def test_hand_written_zip_byte_order_offset_and_stride(tmp_path):
    values = np.arange(12, dtype=np.float32)
    for order, raw in (("little", values.astype("<f4")), ("big", values.astype(">f4"))):
        path = _zip_pth(
            tmp_path / f"{order}.pth",
            _tensor_pickle(12, 1, (2, 3), (1, 4)),
            {"data/0": raw.tobytes(), "byteorder": order.encode()},
        )
        got = pth.read_state_dict(path)["w"]
        np.testing.assert_array_equal(got, values[1:].reshape(-1)[np.array([[0, 4, 8], [1, 5, 9]])])


def test_a_tensor_reaching_outside_its_storage_is_refused(tmp_path):
    raw = np.zeros(12, np.float32).tobytes()
    path = _zip_pth(tmp_path / "a.pth", _tensor_pickle(12, 2, (3, 4), (4, 1)), {"data/0": raw})
    with pytest.raises(ValueError, match="reaches outside its storage of 12 elements"):
        pth.read_state_dict(path)
    short = _zip_pth(tmp_path / "b.pth", _tensor_pickle(12, 0, (12,), (1,)), {"data/0": raw[:40]})
    with pytest.raises(ValueError, match="40 bytes, but 12 elements of float32 need 48"):
        pth.read_state_dict(short)


def test_a_truncated_legacy_file_is_refused(tmp_path):
    with open(os.path.join(GOLDEN, "tiny_legacy.pth"), "rb") as f:
        data = f.read()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) - 10])
    with pytest.raises(ValueError, match=r"cut\.pth"):
        pth.read_state_dict(path)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="no magic number"):
        pth.read_state_dict(path)
