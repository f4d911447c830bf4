"""The Inception metrics' plumbing: the weights file is checked before it is parsed, real
statistics are cached by what they measure, and the evaluator scores samples against them.

The network has seeded random weights (those of tests/test_inception.py, which proves it
equal to pytorch-fid); batches are made small so that few 299×299 images run on the CPU.
"""

import numpy as np
import pytest

from jaxgan import data, errors, evaluate, evaluators, inception_features, pth


@pytest.fixture
def weights(random_inception_weights):
    return random_inception_weights


# ----------------------------------------------------------------------------- the weights file
def _one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


def test_no_weights_file_says_which_file_and_where_to_get_it(monkeypatch):
    monkeypatch.delenv(inception_features.ENV_VAR, raising=False)
    with pytest.raises(errors.EvaluationError) as e:
        inception_features.load_weights(None)
    message = _one_line(e)
    w = inception_features.WEIGHTS
    assert w.name in message and f"{w.size:,}" in message and w.sha256 in message
    assert w.url in message and "--inception_weights" in message and "JAXGAN_INCEPTION" in message


def test_a_truncated_file_is_refused_by_its_size(tmp_path):
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    path.write_bytes(b"PK" + b"\0" * 1000)
    with pytest.raises(errors.EvaluationError) as e:
        inception_features.load_weights(str(path))
    assert "1,002 bytes, not 95,628,359" in _one_line(e) and "truncated" in str(e.value)


def test_a_file_of_the_right_size_and_another_hash_is_never_parsed(tmp_path, monkeypatch):
    path = tmp_path / "weights.pth"
    with open(path, "wb") as f:  # zeros, of the pinned size
        f.truncate(inception_features.WEIGHTS.size)
    parsed = []
    monkeypatch.setattr(pth, "read_state_dict", lambda p: parsed.append(p))
    with pytest.raises(errors.EvaluationError) as e:
        inception_features.load_weights(str(path))
    assert "sha256 " in _one_line(e) and inception_features.WEIGHTS.sha256 in str(e.value)
    assert parsed == []  # refused before a byte was parsed


def test_the_environment_variable_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(inception_features.ENV_VAR, str(tmp_path / "absent.pth"))
    with pytest.raises(errors.EvaluationError, match=r"no Inception weights file at .*absent"):
        inception_features.load_weights(None)


def test_the_cli_refuses_a_wrong_weights_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "w.pth"
    path.write_bytes(b"not weights")
    status = evaluate.main([f"--workdir={tmp_path}", f"--inception_weights={path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "not the FID Inception weights" in err[0]


# ----------------------------------------------------------------------------- features, cache
def _images(n, seed, size=16, channels=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def test_extract_is_batched_and_takes_a_function(weights, small_batches):
    images = _images(11, 0).astype(np.float32) / 255.0
    whole, whole_logits = inception_features.extract(weights, images)
    parts, logits = inception_features.extract(weights, lambda a, b: images[a:b], 11)
    assert whole.shape == (11, 2048) and whole_logits.shape == (11, 1008)
    np.testing.assert_allclose(parts, whole, rtol=1e-6)
    np.testing.assert_allclose(logits, whole_logits, rtol=1e-6)
    single, _ = inception_features.extract(weights, images[:1])
    np.testing.assert_allclose(single[0], whole[0], rtol=1e-4, atol=1e-5)  # padding: no effect


def test_real_statistics_are_cached_by_what_they_measure(weights, small_batches, tmp_path):
    images = _images(10, 1)
    calls = []

    def load():
        calls.append(1)
        return images

    kwargs = dict(dataset="toy", fingerprint="f1", split="train", num=6, cache_dir=str(tmp_path))
    first = inception_features.real_statistics(weights, load, **kwargs)
    assert not first.cached and first.features.shape == (6, 2048) and len(calls) == 1
    np.testing.assert_allclose(first.mu, first.features.astype(np.float64).mean(axis=0))
    again = inception_features.real_statistics(weights, load, **kwargs)
    assert again.cached and len(calls) == 1
    np.testing.assert_array_equal(again.features, first.features)
    np.testing.assert_array_equal(again.sigma, first.sigma)
    other = inception_features.real_statistics(weights, load, **{**kwargs, "fingerprint": "f2"})
    assert not other.cached and len(calls) == 2 and other.path != first.path


def _toy_split(split):
    images = _images(12 if split == "train" else 8, 2 if split == "train" else 3)
    return data.Dataset(
        name="toy",
        kind="images",
        shape=images.shape[1:],
        arrays={"images": images},
        fingerprint=f"toy-{split}",
        num_examples=len(images),
    )


def test_the_evaluator_scores_real_images_as_real(weights, small_batches, tmp_path):
    kwargs = dict(dataset_name="toy", output_range=(-1.0, 1.0), num_samples=12, real_num=12,
                  kid_subsets=2, cache_dir=str(tmp_path))  # fmt: skip
    evaluator = evaluators.make_inception_evaluator(weights, _toy_split, **kwargs)
    names = {"fid", "kid", "kid_se", "is", "is_std", "precision", "recall", "density",
             "coverage"}  # fmt: skip
    assert set(evaluator.floor) == {f"inception_{n}" for n in names}
    protocol = evaluator.protocol["inception"]
    assert protocol["weights_sha256"] == "0" * 64 and protocol["num_samples"] == 12
    assert "first 12 images" in protocol["real"] and "8 images of toy test" in protocol["floor"]
    reference = _toy_split("train").arrays["images"].astype(np.float32) / 127.5 - 1.0
    same = evaluator(lambda num: reference[:num])  # the reference images themselves
    assert same["inception_fid"] == pytest.approx(0.0, abs=1e-3)
    assert same["inception_precision"] == same["inception_recall"] == 1.0
    assert same["inception_coverage"] == 1.0
    noise = evaluator(lambda num: np.zeros((num, 16, 16, 1), np.float32))  # one grey image
    assert noise["inception_fid"] > same["inception_fid"] + 1.0
    assert noise["inception_recall"] < 1.0


def test_inception_metrics_refuse_2d_data(tmp_path):
    def mixture(split):
        return data.mixture("grid25")

    with pytest.raises(errors.EvaluationError, match="need images"):
        evaluators.make_inception_evaluator(
            inception_features.InceptionWeights({}, "0" * 64, "x"), mixture,
            dataset_name="grid25", output_range=(-1.0, 1.0), cache_dir=str(tmp_path),
        )  # fmt: skip
