"""Run by tests/test_devices.py in a subprocess (never collected by pytest: leading underscore).

    python tests/_multidevice_worker.py OUT.npz DEVICE_COUNTS [PROCESS_ID NUM_PROCESSES PORT]

Forces 4 host devices (or 2 per process in the two-process form, which first calls
``jax.distributed.initialize`` on localhost with CPU collectives), then solves and simulates the
small cases of :func:`cases` on each device count of the comma-separated list and writes the
per-replica / per-seed arrays to OUT.npz (process 0 only).
"""

import os
import sys

out_path, counts = sys.argv[1], [int(c) for c in sys.argv[2].split(",")]
multi = len(sys.argv) > 3
per_process = 2 if multi else 4
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + f" --xla_force_host_platform_device_count={per_process}")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
if multi:
    pid, nproc, port = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=nproc,
                               process_id=pid, initialization_timeout=120)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from _device_cases import cases  # noqa: E402  (tests/ is on sys.path: the script folder)

out = {}
for ndev in counts:
    dev_arg = ndev
    if multi:  # interleave the processes' devices: a replica's samples span both processes
        devs = jax.devices()
        dev_arg = [d for pair in zip(devs[:ndev // 2], devs[ndev // 2 : ndev]) for d in pair]
        assert len({d.process_index for d in dev_arg[:2]}) == 2
    for name, run in cases().items():
        res = run(dev_arg)
        if res is None:
            continue
        for key, val in res.items():
            out[f"{name}/{ndev}/{key}"] = np.asarray(val)
if not multi and 4 in counts:
    # a solve whose per-device state does not fit on one device runs when sharded over 4
    from _device_cases import fits_only_when_sharded  # noqa: E402

    out.update(fits_only_when_sharded())
if jax.process_index() == 0:
    np.savez(out_path, **out)
