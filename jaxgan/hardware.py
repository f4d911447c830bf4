"""What machine this is, and what that means for the convolution formulation.

``model.conv = "auto"`` (the default) is resolved here, from measurements recorded in
docs/BENCHMARKS.md ("Convolution formulations per platform"):

- on CPU, the CPU-tuned formulations (``fast``: phase-decomposed transposed
  convolutions, im2col image layers, their custom JVPs; ``jaxgan/conv.py``) where they
  were measured faster than XLA's own convolutions on the CPU found;
- on GPU and TPU, plain ``lax`` convolutions: cuDNN and the TPU compiler are built for
  them, and no measurement there shows the CPU formulations winning.

Both formulations have the same parameters and give the same outputs and gradients up
to float rounding (tested), so the choice changes speed, not the model.
"""

from __future__ import annotations

import platform

import jax

__all__ = ["CONV_CHOICES", "choose_conv", "cpu_model"]

# What config.model.conv accepts: auto, or one of models.CONV_FORMULATIONS.
CONV_CHOICES = ("auto", "fast", "lax")

# CPU model names (lscpu's, a prefix match) on which the fast formulations were measured
# against lax, per network, at batch 64: the ratio fast/lax of the whole training step's
# images per second (docs/BENCHMARKS.md has the commands and the dates).
_CPU_MEASUREMENTS: dict[str, dict[str, float]] = {
    # 2026-12-03, 2 cores, jax 0.10.2, interleaved rounds (medians)
    "AMD EPYC": {"dcgan28": 1.48, "dcgan32": 2.35, "dcgan64": 4.19},
}


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` shows it (``/proc/cpuinfo``'s ``model name``;
    the platform's processor string elsewhere): speed figures are per CPU model."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def choose_conv(model: str, backend: str | None = None, cpu: str | None = None) -> tuple[str, str]:
    """The formulation ``model.conv = "auto"`` stands for, and why, in words.

    Args:
      model: the network's name (``model.name``).
      backend: ``jax.default_backend()`` when None (``cpu``, ``gpu``, ``tpu``, ...).
      cpu: the CPU model name (:func:`cpu_model` when None); only read on CPU.

    Returns:
      ``(formulation, reason)``: ``"fast"`` or ``"lax"``, and a short sentence for the
      run's log.
    """
    backend = jax.default_backend() if backend is None else backend
    if backend != "cpu":
        return "lax", f"{backend}: XLA's own convolutions (the fast ones are CPU-tuned)"
    cpu = cpu_model() if cpu is None else cpu
    for prefix, ratios in _CPU_MEASUREMENTS.items():
        if cpu.startswith(prefix):
            ratio = ratios.get(model)
            if ratio is None:
                return "fast", f"CPU {cpu}: {model} not measured here; the CPU-tuned ones"
            choice = "fast" if ratio > 1.0 else "lax"
            return choice, f"CPU {cpu}: measured {ratio:.2f}× fast/lax on {model}"
    return "fast", f"CPU {cpu}: not measured; the CPU-tuned ones, as on the CPUs measured"
