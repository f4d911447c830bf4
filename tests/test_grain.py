"""The Grain loader (jaxgan.data.streaming): the choice of loader, the same batches as the
device loader bit for bit, bitwise resume with its position in the checkpoint, center crop
and resize, and the config fields' errors.

The datasets are tfds.testing.mock_data's MNIST (20 images of 28×28×1 = 15.3 KiB, with
labels), larger than the 10,000-byte ``memory_budget_bytes`` the tests configure.
"""

import json
import os
import shutil
import types

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import Mesh

from jaxgan import checkpointing, data, run_folder, state, steps, trainer
from jaxgan.configs import mnist_cgan, mnist_mlp
from jaxgan.data import streaming
from jaxgan.errors import ConfigError, DataError, RunError

NUM_EXAMPLES = 20  # mock MNIST: 20 × 784 bytes = 15,680 bytes
SMALL_BUDGET = 10_000  # less than the mock dataset: auto streams it
LARGE_BUDGET = 10**9


def _data_config(**fields):
    values = dict(name="mnist", idx_dir=None, data_dir=None, split="train", image_size=0,
                  loader="auto", memory_budget_bytes=SMALL_BUDGET)  # fmt: skip
    values.update(fields)
    return types.SimpleNamespace(**values)


def _mock():
    return tfds.testing.mock_data(num_examples=NUM_EXAMPLES)


# ----------------------------------------------------------------------------
# The choice of loader
# ----------------------------------------------------------------------------


def test_auto_streams_data_larger_than_the_budget_and_says_why():
    with _mock():
        loader, why = data.choose_loader(_data_config())
        assert loader == "grain"
        assert why == (
            "mnist 15.3 KiB: 20 images of 28×28×1 > config.data.memory_budget_bytes = 9.8 KiB"
        )
        loader, why = data.choose_loader(_data_config(memory_budget_bytes=LARGE_BUDGET))
        assert loader == "device" and "≤ config.data.memory_budget_bytes = 953.7 MiB" in why
        # The budget counts the images at config.data.image_size: 20 × 16×16×1 = 5 KiB fit.
        loader, why = data.choose_loader(_data_config(image_size=16))
        assert loader == "device" and "20 images of 16×16×1" in why
        # An explicit choice is kept, and says so.
        loader, why = data.choose_loader(_data_config(loader="grain", memory_budget_bytes=0))
        assert loader == "grain" and why.startswith("config.data.loader=grain; mnist")


def test_default_budget_is_half_the_device_memory():
    budget, words = data.memory_budget(_data_config(memory_budget_bytes=0))
    assert budget == int(data.DATA_MEMORY_FRACTION * data.device_memory_bytes())
    assert words.startswith("50% of ")
    with _mock():
        assert data.choose_loader(_data_config(memory_budget_bytes=0))[0] == "device"


def test_mixtures_are_drawn_on_the_device():
    config = _data_config(name="grid25")
    assert data.choose_loader(config) == ("device", "grid25 is an embedded 2-D mixture")
    with pytest.raises(DataError, match="loader=auto"):
        data.choose_loader(_data_config(name="grid25", loader="grain"))


def test_device_loader_refuses_data_over_the_budget_saying_to_stream():
    with _mock(), pytest.raises(DataError, match=r"--config\.data\.loader=grain"):
        data.load(_data_config(loader="device"))


def _tiny_run(loader="auto", budget=SMALL_BUDGET, conditional=False, **fields):
    """A few steps of mnist_mlp (or of mnist_cgan's dcgan28) on the mock data."""
    config = (mnist_cgan if conditional else mnist_mlp).get_config()
    config.data.name = "mnist"
    config.data.idx_dir = ""
    config.data.loader = loader
    config.data.memory_budget_bytes = budget
    config.batch_size = 4 if conditional else 10
    config.num_steps = 4
    config.log_every = config.ckpt_every = 2
    config.eval_every = 1000
    config.eval_metrics = config.eval_parzen = False
    for name, value in fields.items():
        setattr(config, name, value)
    return config


def _train(config, workdir):
    logs = []
    with _mock():
        status = trainer.train_and_evaluate(config, str(workdir), log=logs.append)
    assert status == 0, logs
    return logs


def _data_lines(logs):
    return [line for line in logs if line.startswith("data: ")]


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _assert_same_state(a, b):
    step_a, leaves_a = checkpointing.newest_arrays(str(a))
    step_b, leaves_b = checkpointing.newest_arrays(str(b))
    assert step_a == step_b
    assert leaves_a.keys() == leaves_b.keys()
    for name in leaves_a:
        assert leaves_a[name].dtype == leaves_b[name].dtype, name
        assert leaves_a[name].tobytes() == leaves_b[name].tobytes(), f"{name} differs"


def _training_fields(record):
    return {k: v for k, v in record.items() if not k.startswith(("eval_", "alarm_mode"))}


# ----------------------------------------------------------------------------
# The same batches as the device loader, bit for bit (fast: the feed alone)
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_seeds", "n_fused", "d_steps", "labels"),
    [(1, 1, 1, False), (2, 2, 2, False), (1, 2, 1, True), (2, 1, 2, True)],
)
def test_feed_batches_equal_the_device_loaders(num_seeds, n_fused, d_steps, labels):
    with _mock():
        held = data.load(_data_config(memory_budget_bytes=LARGE_BUDGET))
        streamed = data.load(_data_config(), stream=True)
    assert "images" not in streamed.arrays and held.source is None
    np.testing.assert_array_equal(streamed.arrays["labels"], held.arrays["labels"])
    assert streamed.fingerprint == held.fingerprint and streamed.num_classes == 10
    seed, batch, value_range = 3, 4, (-1.0, 1.0)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    feed = streaming.Feed(
        streamed, seed=seed, num_seeds=num_seeds, d_steps=d_steps, batch_size=batch,
        steps_per_dispatch=n_fused, num_steps=6 * n_fused, labels=labels, mesh=mesh,
    )  # fmt: skip
    sampler = steps.make_batch_sampler(
        held, d_steps=d_steps, batch_size=batch, value_range=value_range, labels=labels
    )
    draw = jax.jit(sampler)
    feed.start(2 * n_fused)  # from the middle of a run, as after a resume
    for dispatch in range(2, 5):
        got = next(feed)
        images, classes = got if labels else (got, None)
        lead = (n_fused, *((num_seeds,) if num_seeds > 1 else ()), d_steps, batch)
        assert images.dtype == np.uint8 and images.shape == (*lead, 28, 28, 1)
        assert images.sharding.spec[len(lead) - 1] == "data"
        floats = np.asarray(data.pixels_to_floats(images, value_range))
        for t in range(n_fused):
            step = dispatch * n_fused + t
            for s in range(num_seeds):
                key = jax.random.fold_in(state.make_keys(seed + s)["data"], step)
                want = draw(held.arrays, key)
                at = (t, s) if num_seeds > 1 else (t,)
                want_images = want[0] if labels else want
                assert np.asarray(want_images).tobytes() == floats[at].tobytes(), (step, s)
                if labels:
                    np.testing.assert_array_equal(np.asarray(classes)[at], np.asarray(want[1]))
        assert feed.position((dispatch + 1) * n_fused)["grain_iterator"] == {
            "next_index": dispatch + 1
        }
    # Another step's batch differs (the check above can fail).
    other = draw(held.arrays, jax.random.fold_in(state.make_keys(seed)["data"], 0))
    assert np.asarray(other[0] if labels else other).tobytes() != floats[at].tobytes()


def test_feed_sample_equals_the_device_loaders_reference_samples():
    with _mock():
        held = data.load(_data_config(memory_budget_bytes=LARGE_BUDGET))
        streamed = data.load(_data_config(), stream=True)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    feed = streaming.Feed(streamed, seed=0, num_seeds=1, d_steps=1, batch_size=2,
                          steps_per_dispatch=1, num_steps=2, labels=False, mesh=mesh)  # fmt: skip
    key = jax.random.key(5)
    want = data.sample_batch(held.arrays, key, 64, dataset=held, value_range=(0.0, 1.0))
    assert feed.sample(key, 64, (0.0, 1.0)).tobytes() == np.asarray(want).tobytes()


def test_feed_refuses_a_position_of_another_step():
    with _mock():
        streamed = data.load(_data_config(), stream=True)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    feed = streaming.Feed(streamed, seed=0, num_seeds=1, d_steps=1, batch_size=2,
                          steps_per_dispatch=2, num_steps=8, labels=False, mesh=mesh)  # fmt: skip
    good = {"loader": "grain", "next_step": 4, "grain_iterator": {"next_index": 2}}
    feed.start(4, good)  # accepted
    for bad in (
        {**good, "next_step": 6},
        {**good, "grain_iterator": {"next_index": 3}},
        {"loader": "grain"},
    ):
        with pytest.raises(RunError, match=r"not that of step 4.*move this one aside"):
            feed.start(4, bad)


def test_feed_needs_labels_for_a_conditional_gan(tmp_path):
    images = np.zeros((3, 4, 4, 1), np.uint8)
    streamed = data._finish(data._images_dataset("tiny", images), 0, stream=True)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    with pytest.raises(DataError, match="no class labels"):
        streaming.Feed(streamed, seed=0, num_seeds=1, d_steps=1, batch_size=1,
                       steps_per_dispatch=1, num_steps=1, labels=True, mesh=mesh)  # fmt: skip


# ----------------------------------------------------------------------------
# End to end: the trainer (slow: each run compiles)
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four steps of two seeds, two iterations a dispatch, two D steps, through each
    loader, and the first two steps of each (copied by the tests that resume them)."""
    tmp = tmp_path_factory.mktemp("runs")
    fields = dict(num_seeds=2, steps_per_dispatch=2, d_steps=2)
    logs = {}
    for name, budget, num_steps in (
        ("grain", SMALL_BUDGET, 4), ("device", LARGE_BUDGET, 4),
        ("grain_half", SMALL_BUDGET, 2), ("device_half", LARGE_BUDGET, 2),
    ):  # fmt: skip
        logs[name] = _train(_tiny_run(budget=budget, **{**fields, "num_steps": num_steps}),
                            tmp / name)  # fmt: skip
    return types.SimpleNamespace(tmp=tmp, logs=logs, fields=fields, grain=tmp / "grain",
                                 device=tmp / "device")  # fmt: skip


@pytest.mark.slow
def test_trainer_prints_the_loader_and_why(runs):
    assert _data_lines(runs.logs["grain"]) == [
        "data: grain loader (mnist 15.3 KiB: 20 images of 28×28×1 > "
        "config.data.memory_budget_bytes = 9.8 KiB)"
    ]
    (line,) = _data_lines(runs.logs["device"])
    assert line.startswith("data: device loader (mnist 15.3 KiB: 20 images of 28×28×1 ≤ ")


@pytest.mark.slow
def test_grain_run_equals_device_run_bitwise(runs):
    _assert_same_state(runs.grain, runs.device)
    assert _records(runs.grain) == _records(runs.device)
    assert [r["step"] for r in _records(runs.grain)] == [2, 4]
    # The grain run's checkpoints hold the loader's position; the device run's do not.
    for step in (2, 4):
        assert os.path.isdir(runs.grain / "checkpoints" / str(step) / "data")
        assert not os.path.exists(runs.device / "checkpoints" / str(step) / "data")
    manager = checkpointing.open_manager(str(runs.grain), keep=3, read_only=True,
                                         loader_position=True)  # fmt: skip
    assert checkpointing.loader_position(manager, 2) == {
        "loader": "grain",
        "next_step": 2,
        "grain_iterator": {"next_index": 1},
    }
    manager.close()


@pytest.mark.slow
def test_a_streamed_run_s_real_data_loads_on_the_host_for_its_tools(runs):
    # Guided sampling refines D on the training images: held on the host, not refused by
    # the run's small device budget.
    with _mock():
        trained = run_folder.open_run(str(runs.grain))
        real = trained.training_real(8)
    assert trained.config.data.memory_budget_bytes == SMALL_BUDGET
    low, high = trained.gan.models.output_range
    assert real.shape == (8, 28, 28, 1) and real.min() >= low and real.max() <= high


def _resume(tmp_path, runs, half, budget=SMALL_BUDGET, then=None):
    """A copy of the two-step run ``half``, then on to four steps (``then(workdir)``
    changes the copy first)."""
    workdir = tmp_path / "split"
    shutil.copytree(runs.tmp / half, workdir)
    if then is not None:
        then(workdir)
    logs = _train(_tiny_run(budget=budget, **runs.fields), workdir)
    assert any("from the checkpoint at step 2" in line for line in logs), logs
    return workdir, _data_lines(logs)[0]


def _assert_same_run(a, b):
    _assert_same_state(a, b)
    ra, rb = _records(a), _records(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb, strict=True):
        assert _training_fields(x) == _training_fields(y)


@pytest.mark.slow
def test_grain_resume_is_bitwise_equal(tmp_path, runs):
    workdir, line = _resume(tmp_path, runs, "grain_half")
    assert line.startswith("data: grain loader")
    _assert_same_run(workdir, runs.grain)
    assert os.path.isdir(workdir / "checkpoints" / "4" / "data")


@pytest.mark.slow
def test_checkpoint_without_the_loader_position_still_resumes(tmp_path, runs):
    def drop_positions(workdir):  # as checkpoints older than the Grain loader are
        for step in os.listdir(workdir / "checkpoints"):
            shutil.rmtree(workdir / "checkpoints" / step / "data")

    workdir, _ = _resume(tmp_path, runs, "grain_half", then=drop_positions)
    _assert_same_run(workdir, runs.grain)


@pytest.mark.slow
def test_device_loader_checkpoint_resumes_with_grain(tmp_path, runs):
    workdir, line = _resume(tmp_path, runs, "device_half")
    assert line.startswith("data: grain loader")
    _assert_same_run(workdir, runs.grain)


@pytest.mark.slow
def test_grain_checkpoint_resumes_with_the_device_loader(tmp_path, runs):
    workdir, line = _resume(tmp_path, runs, "grain_half", budget=LARGE_BUDGET)
    assert line.startswith("data: device loader")
    _assert_same_run(workdir, runs.device)


def _refused(workdir, runs):
    with _mock(), pytest.raises(RunError) as error:
        trainer.train_and_evaluate(_tiny_run(**runs.fields), str(workdir), log=lambda _: None)
    return str(error.value)


@pytest.mark.slow
def test_tampered_loader_position_is_refused(tmp_path, runs):
    workdir = tmp_path / "w"
    shutil.copytree(runs.tmp / "grain_half", workdir)
    saved = workdir / "checkpoints" / "2" / "data" / "metadata"
    position = json.loads(saved.read_text())
    assert position == {"loader": "grain", "next_step": 2, "grain_iterator": {"next_index": 1}}
    position["grain_iterator"]["next_index"] = 7
    saved.write_text(json.dumps(position))
    message = _refused(workdir, runs)
    assert "checkpoint at step 2" in message and "'next_index': 7" in message
    assert "move this one aside" in message
    assert os.path.exists(saved)  # nothing moved or deleted
    saved.write_text("{not json")  # unreadable: refused too, saying so
    message = _refused(workdir, runs)
    assert "loader's position" in message and str(saved.parent) in message
    assert "move this one aside" in message


@pytest.mark.slow
def test_conditional_grain_run_equals_device_run(tmp_path):
    """A class-conditional GAN: the labels are streamed with the images."""
    _train(_tiny_run(conditional=True, num_steps=2), tmp_path / "grain")
    _train(_tiny_run(conditional=True, budget=LARGE_BUDGET, num_steps=2), tmp_path / "device")
    _assert_same_state(tmp_path / "grain", tmp_path / "device")
    assert _records(tmp_path / "grain") == _records(tmp_path / "device")


# ----------------------------------------------------------------------------
# Center crop and resize
# ----------------------------------------------------------------------------


def test_center_crop_keeps_the_centered_square_exactly():
    wide = np.arange(4 * 6 * 2, dtype=np.uint8).reshape(4, 6, 2)
    out = data.center_crop_resize(wide, 4)
    assert out.shape == (4, 4, 2) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, wide[:, 1:5])
    tall = np.arange(7 * 3 * 1, dtype=np.uint8).reshape(7, 3, 1)
    np.testing.assert_array_equal(data.center_crop_resize(tall, 3), tall[2:5])


def test_resize_content_is_the_centered_square_scaled():
    # 8×12: a black 8×8 square in the middle, white bands of 2 columns either side that
    # the crop removes; channel 1 is a ramp down the rows, the same across the columns.
    image = np.zeros((8, 12, 2), np.uint8)
    image[:, :2, 0] = image[:, -2:, 0] = 255
    image[..., 1] = (np.arange(8) * 30)[:, None]
    out = data.center_crop_resize(image, 4)
    assert out.shape == (4, 4, 2)
    assert (out[..., 0] == 0).all()  # none of the cropped white bands leaks in
    ramp = out[..., 1]
    assert (ramp == ramp[:, :1]).all()  # rows stay constant across columns
    assert (np.diff(ramp[:, 0].astype(int)) > 0).all()  # and still increase downwards
    # Bilinear with antialiasing: each output row is near the mean of its two input rows.
    np.testing.assert_allclose(ramp[:, 0], [15 + 60 * i for i in range(4)], atol=12)
    # Upsampling a constant square keeps the constant; each channel alike.
    flat = np.stack([np.full((3, 5), 7), np.full((3, 5), 200)], -1).astype(np.uint8)
    up = data.center_crop_resize(flat, 6)
    assert up.shape == (6, 6, 2) and (up[..., 0] == 7).all() and (up[..., 1] == 200).all()


def test_center_crop_resize_refuses_other_arrays():
    with pytest.raises(DataError, match=r"uint8 \(H, W, C\)"):
        data.center_crop_resize(np.zeros((4, 4), np.uint8), 2)
    with pytest.raises(DataError, match="float32"):
        data.center_crop_resize(np.zeros((4, 4, 1), np.float32), 2)


def test_image_size_is_the_same_streamed_or_held():
    config = _data_config(image_size=16, memory_budget_bytes=LARGE_BUDGET)
    with _mock():
        plain = data.load(_data_config(memory_budget_bytes=LARGE_BUDGET))
        held = data.load(config)
        streamed = data.load(config, stream=True)
    assert held.shape == streamed.shape == (16, 16, 1)
    assert held.arrays["images"].shape == (NUM_EXAMPLES, 16, 16, 1)
    assert held.fingerprint == streamed.fingerprint != plain.fingerprint
    for i in (0, 7, NUM_EXAMPLES - 1):
        image, label = streamed.source[i]
        np.testing.assert_array_equal(image, held.arrays["images"][i])
        np.testing.assert_array_equal(image, data.center_crop_resize(plain.arrays["images"][i], 16))
        assert label == held.arrays["labels"][i]
    with pytest.raises(IndexError):
        streamed.source[NUM_EXAMPLES]


# ----------------------------------------------------------------------------
# Config fields
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("loader", "gpu", "Unknown config.data.loader 'gpu'; choose one of"),
        ("memory_budget_bytes", -1, "config.data.memory_budget_bytes must be an integer >= 0"),
        ("image_size", -64, "config.data.image_size must be an integer >= 0"),
        ("image_size", 64.0, "config.data.image_size must be an integer >= 0"),
        ("image_size", True, "config.data.image_size must be an integer >= 0"),
    ],
)
def test_bad_data_fields_are_refused_naming_the_field(field, value, needle):
    config = mnist_mlp.get_config()
    with config.unlocked():  # past ml_collections' type check, as a JSON config could be
        del config.data[field]
        config.data[field] = value
    with pytest.raises(ConfigError) as error:
        trainer.validate_config(config)
    assert needle in str(error.value)


def test_choose_loader_refuses_an_unknown_loader():
    with pytest.raises(DataError, match=r"config\.data\.loader 'fast'"):
        data.choose_loader(_data_config(loader="fast"))
