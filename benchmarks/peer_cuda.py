"""Runs the PyTorch peer (`shared/peers/peer_torch.py`, unmodified) on a CUDA GPU.

    python benchmarks/peer_cuda.py PATH/TO/peer_torch.py --model dcgan28 --batch 64 ...

The peer builds its tensors with the default device and reads `time.perf_counter`: this
sets the default device to CUDA, makes `torch.Generator()` a CUDA generator, and makes
the clock synchronize the GPU first, so its timed loop measures finished GPU work.
"""

import os
import runpy
import sys
import time

import torch

DEVICE = os.environ.get("PEER_DEVICE", "cuda")  # "cpu" only to try this wrapper out
torch.set_default_device(DEVICE)
_Generator = torch.Generator


class _DefaultDeviceGenerator(_Generator):
    """`torch.Generator()` on the default device (the peer seeds its real batch with one)."""

    def __new__(cls, device=None):
        return _Generator(device=device or DEVICE)


torch.Generator = _DefaultDeviceGenerator
_clock = time.perf_counter


def _synced_clock():
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return _clock()


time.perf_counter = _synced_clock
peer, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
runpy.run_path(peer, run_name="__main__")
