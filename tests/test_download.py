"""``python -m jaxgan.data download``, against a local HTTP server of the real IDX files.

The server (``http.server`` in a thread on 127.0.0.1) serves ``/MODE/NAME/FILE`` from the
shared data folder (tests/conftest.py); ``MODE`` says how it behaves: ``ok`` (honours
Range), ``norange`` (ignores Range), ``corrupt`` (one byte changed), ``cut`` (the
connection drops half-way). The tests skip, saying why, when the real files are absent.
Also here: ``load_idx`` refusing the files of another dataset.
"""

import filecmp
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import types

import pytest

from jaxgan import data
from jaxgan.data import __main__ as cli
from jaxgan.data import download

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = [f for pair in data.IDX_FILES.values() for f in pair]
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        found = re.fullmatch(r"/(\w+)/(\w+)/([\w.-]+)", self.path)
        path = found and os.path.join(self.server.root, found.group(2), found.group(3))
        if not found or not os.path.isfile(path):
            self.send_error(404)
            return
        mode = found.group(1)
        with open(path, "rb") as f:
            body = f.read()
        if mode == "corrupt":
            body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
        start = 0
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if wanted and mode != "norange":
            start = int(wanted.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2] if mode == "cut" else payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(mnist_idx_dir):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.root = os.path.dirname(mnist_idx_dir)
    httpd.requests = []
    httpd.mirror = lambda mode, name="mnist": (
        f"http://127.0.0.1:{httpd.server_address[1]}/{mode}/{name}/"
    )
    httpd.asked = lambda filename: [r for p, r in httpd.requests if p.endswith("/" + filename)]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _same_files(folder, reference):
    for name in FILES:
        assert filecmp.cmp(os.path.join(folder, name), os.path.join(reference, name), False)
    assert not [n for n in os.listdir(folder) if n.endswith(".part")]


def _run(capsys, *argv):
    status = cli.main(["download", "mnist", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def _closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


# ------------------------------------------------------------------ the pinned table


def test_pinned_checksums_are_those_of_the_real_files(mnist_idx_dir, fashion_mnist_idx_dir):
    for name, folder in (("mnist", mnist_idx_dir), ("fashion_mnist", fashion_mnist_idx_dir)):
        assert sorted(data.IDX_CHECKSUMS[name]) == sorted(FILES)
        for filename, (sha256, size) in data.IDX_CHECKSUMS[name].items():
            path = os.path.join(folder, filename)
            assert (data.file_sha256(path), os.path.getsize(path)) == (sha256, size), filename
    assert set(download.MIRRORS) == set(data.IDX_NAMES) == set(data.IDX_CHECKSUMS)


# ------------------------------------------------------------------ downloads


def test_download_into_an_empty_folder_then_train_from_it(tmp_path, server, mnist_idx_dir):
    """(a) The command line in a subprocess: byte-identical files, exit 0, load_idx works."""
    target = tmp_path / "data" / "mnist"
    proc = subprocess.run(
        [sys.executable, "-m", "jaxgan.data", "download", "mnist", f"--dir={target}",
         f"--mirror={server.mirror('ok')}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"are in {target} (4 downloaded, 0 already there" in proc.stdout
    assert proc.stdout.strip().endswith(f"Train with: --config.data.idx_dir={target}")
    assert "error" not in proc.stderr
    _same_files(target, mnist_idx_dir)
    assert [r for _, r in server.requests] == [None] * 4
    assert data.load_idx(str(target)).arrays["images"].shape == (60000, 28, 28, 1)


def test_second_run_downloads_nothing(tmp_path, server, capsys):
    """(b) Files already there with their pinned hash are not asked for again."""
    argv = (f"--dir={tmp_path}", f"--mirror={server.mirror('ok')}")
    assert _run(capsys, *argv)[0] == 0
    assert len(server.requests) == 4
    status, out, err = _run(capsys, *argv)
    assert (status, err, len(server.requests)) == (0, "", 4)
    assert "(0 downloaded, 4 already there" in out


def test_a_part_file_is_resumed_with_a_range_request(tmp_path, server, mnist_idx_dir, capsys):
    """(c) FILE.part is continued from its length; the result is the pinned file."""
    with open(os.path.join(mnist_idx_dir, TRAIN_IMAGES), "rb") as f:
        head = f.read(3_000_000)
    (tmp_path / (TRAIN_IMAGES + ".part")).write_bytes(head)
    status, _, err = _run(capsys, f"--dir={tmp_path}", f"--mirror={server.mirror('ok')}")
    assert (status, err) == (0, ""), err
    assert server.asked(TRAIN_IMAGES) == ["bytes=3000000-"]
    _same_files(tmp_path, mnist_idx_dir)


def test_a_server_that_ignores_range_restarts_cleanly(tmp_path, server, mnist_idx_dir, capsys):
    with open(os.path.join(mnist_idx_dir, TRAIN_IMAGES), "rb") as f:
        head = f.read(1_000_000)
    (tmp_path / (TRAIN_IMAGES + ".part")).write_bytes(head)
    status, _, err = _run(capsys, f"--dir={tmp_path}", f"--mirror={server.mirror('norange')}")
    assert (status, err) == (0, ""), err
    assert server.asked(TRAIN_IMAGES) == ["bytes=1000000-"]  # asked, answered with all of it
    _same_files(tmp_path, mnist_idx_dir)


def test_a_broken_connection_leaves_a_part_the_next_run_continues(
    tmp_path, server, mnist_idx_dir, capsys
):
    status, _, err = _run(capsys, f"--dir={tmp_path}", f"--mirror={server.mirror('cut')}")
    assert status == 2 and err.count("\n") == 1 and "of 9912422 bytes" in err
    part = tmp_path / (TRAIN_IMAGES + ".part")
    assert part.stat().st_size == 9912422 // 2 and not (tmp_path / TRAIN_IMAGES).exists()
    server.requests.clear()
    status, _, err = _run(capsys, f"--dir={tmp_path}", f"--mirror={server.mirror('ok')}")
    assert (status, err) == (0, ""), err
    assert server.asked(TRAIN_IMAGES) == [f"bytes={9912422 // 2}-"]
    _same_files(tmp_path, mnist_idx_dir)


def test_a_wrong_part_is_downloaded_again_from_scratch(tmp_path, server, mnist_idx_dir):
    (tmp_path / (TRAIN_IMAGES + ".part")).write_bytes(b"\0" * 5_000_000)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the file")
    fetched = download.download("mnist", str(tmp_path), mirrors=[server.mirror("ok")])
    assert [f.resumed_from for f in fetched] == [0, 0, 0, 0]
    assert server.asked(TRAIN_IMAGES) == ["bytes=5000000-", None]
    _same_files(tmp_path, mnist_idx_dir)  # the wrong final file was replaced too


def test_wrong_bytes_are_refused_and_the_next_mirror_is_used(
    tmp_path, server, mnist_idx_dir, capsys
):
    """(d) A mirror serving other bytes: nothing kept, one error line, exit 2; with a
    second mirror, that one gives the files."""
    bad = server.mirror("corrupt")
    status, out, err = _run(capsys, f"--dir={tmp_path}", f"--mirror={bad}")
    assert (status, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("jaxgan.data: error: Could not download")
    assert f"{bad}{TRAIN_IMAGES} (sha256 " in err and "not the pinned 440fcabf" in err
    assert os.listdir(tmp_path) == []  # neither the file nor its .part
    server.requests.clear()
    status, out, err = _run(
        capsys, f"--dir={tmp_path}", f"--mirror={bad}", f"--mirror={server.mirror('ok')}"
    )
    assert (status, err) == (0, ""), err
    assert [p.split("/")[1] for p, _ in server.requests] == ["corrupt", "ok"] * 4
    _same_files(tmp_path, mnist_idx_dir)


def test_no_reachable_mirror(tmp_path, capsys):
    """(e) Exit 2 and one line naming every URL tried and what to do."""
    first, second = _closed_port_url(), _closed_port_url()
    status, out, err = _run(capsys, f"--dir={tmp_path}", f"--mirror={first}", f"--mirror={second}")
    assert (status, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("jaxgan.data: error: Could not download train-images-idx3-ubyte.gz")
    assert f"tried {first}{TRAIN_IMAGES} (URLError: " in err and f"; {second}{TRAIN_IMAGES}" in err
    assert "Check the network" in err and f"copy the four files by hand into {tmp_path}" in err
    assert os.listdir(tmp_path) == []


def test_help_lists_every_flag(capsys):
    """(f) --help exits 0 and explains every flag, with its default."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for action in cli._parser()._actions:
        assert all(flag in out for flag in action.option_strings), action
    for word in ("download", "mnist", "fashion_mnist", "default: data/NAME"):
        assert word in out
    for url in (u for urls in download.MIRRORS.values() for u in urls):
        assert url in out


def test_a_folder_that_cannot_be_made(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    status, _, err = _run(capsys, f"--dir={tmp_path}/file/mnist", "--mirror=http://127.0.0.1:9/")
    assert status == 2 and err.startswith("jaxgan.data: error: Could not make the folder")


# ------------------------------------------------------------------ load_idx checks the files


def test_load_idx_refuses_another_datasets_files(mnist_idx_dir):
    with pytest.raises(data.DataError) as error:
        data.load_idx(mnist_idx_dir, name="fashion_mnist")
    message = str(error.value)
    assert "\n" not in message
    assert f"{mnist_idx_dir} holds MNIST's files, not fashion_mnist's" in message
    assert "point config.data.idx_dir at a Fashion-MNIST folder" in message
    assert "python -m jaxgan.data download fashion_mnist --dir=DIR" in message
    config = types.SimpleNamespace(name="fashion_mnist", idx_dir=mnist_idx_dir, split="test")
    with pytest.raises(data.DataError, match="holds MNIST's files"):
        data.load(config)
    assert data.load_idx(mnist_idx_dir, name="mnist").name == "mnist"


def test_load_idx_refuses_fashion_mnist_as_mnist(fashion_mnist_idx_dir):
    with pytest.raises(data.DataError, match="holds Fashion-MNIST's files, not mnist's"):
        data.load_idx(fashion_mnist_idx_dir, name="mnist", split="test")
    with pytest.raises(data.DataError, match="download mnist --dir=DIR"):
        data.stacked_mnist(fashion_mnist_idx_dir, num_examples=10)
    test = data.load_idx(fashion_mnist_idx_dir, name="fashion_mnist", split="test")
    assert test.arrays["images"].shape == (10000, 28, 28, 1)


def test_the_right_files_are_not_hashed(mnist_idx_dir, monkeypatch):
    """Only a file of another dataset's size is hashed: the right ones cost a stat."""
    hashed = []
    monkeypatch.setattr(data, "file_sha256", lambda path: hashed.append(path) or "")
    data.load_idx(mnist_idx_dir, name="mnist", split="test")
    assert hashed == []
    # Files of another dataset's sizes are compared, and load when their hash is unknown.
    data.load_idx(mnist_idx_dir, name="fashion_mnist", split="test")
    assert [os.path.basename(p) for p in hashed] == list(data.IDX_FILES["test"])
