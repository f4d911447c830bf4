"""Train a GAN.

    python train.py [--config=jaxgan/configs/NAME.py] [--workdir=DIR] [--config.FIELD=VALUE ...]

With no argument it trains the default preset (``grid25``: the 25-Gaussian grid, no
download) into ``runs/grid25``. Rerunning a command on an existing workdir resumes it.
Exit status: 0 done; 2 bad input (one line on stderr says what); 1 training stopped
(non-finite updates, a failed save); 128 + N after signal N (SIGINT 130, SIGTERM 143)
once a checkpoint of the step reached is saved.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "jaxgan", "configs", "grid25.py")


def main(argv: list[str]) -> int:
    from absl import flags
    from ml_collections import config_flags

    try:
        config_flag = config_flags.DEFINE_config_file(
            "config",
            DEFAULT_CONFIG,
            "Path to a config file (jaxgan/configs/*.py).",
            lock_config=True,
        )
        flags.DEFINE_string("workdir", None, "Run folder (default: runs/<config file name>).")
        flags.DEFINE_string(
            "coordinator_address", None,
            "host:port of process 0, for several processes (or $JAX_COORDINATOR_ADDRESS).",
        )  # fmt: skip
        flags.DEFINE_integer("num_processes", None, "Number of processes (or $JAX_NUM_PROCESSES).")
        flags.DEFINE_integer("process_id", None, "This process's index (or $JAX_PROCESS_ID).")
        flags.DEFINE_bool(
            "distributed", False,
            "Initialize jax.distributed, detecting the cluster where JAX can (TPU pods, SLURM, "
            "...). Implied by --coordinator_address or $JAX_COORDINATOR_ADDRESS.",
        )  # fmt: skip
        flags.FLAGS(argv)
        config = config_flag.value
        config.keys()  # a config file that failed to load raises only when first touched
    except Exception as e:  # unknown flag or field, wrong type, missing or broken config file
        message = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, OSError):
            message = f"cannot load the config file: {message}"
        elif isinstance(e, (AttributeError, KeyError)):
            message = f"unknown config field {message} (see jaxgan/configs/default.py)"
        print(f"train.py: error: {message}", file=sys.stderr)
        return 2
    workdir = flags.FLAGS.workdir or os.path.join(
        "runs",
        os.path.splitext(os.path.basename(config_flags.get_config_filename(flags.FLAGS["config"])))[
            0
        ],
    )

    import jax

    from jaxgan import errors, trainer

    fl = flags.FLAGS
    if fl.distributed or fl.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        try:
            jax.distributed.initialize(
                coordinator_address=fl.coordinator_address,
                num_processes=fl.num_processes,
                process_id=fl.process_id,
            )
        except Exception as e:
            print(f"train.py: error: jax.distributed.initialize failed: {e}", file=sys.stderr)
            return 2

    try:
        return trainer.train_and_evaluate(config, workdir)
    except errors.JaxganError as e:
        status = errors.report("train.py", e)
        if isinstance(e, errors.TrainingError):
            # After a failed asynchronous save, orbax leaves non-daemon threads waiting for
            # signals that never come, and a normal exit would hang on them. Everything of
            # ours is closed by now (metrics flushed, no write pending), so leave at once.
            sys.stdout.flush()
            os._exit(status)
        return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
