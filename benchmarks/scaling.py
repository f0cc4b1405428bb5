"""A solve on 1, 2 and 4 devices: wall time and resident memory per device.

    PYTHONPATH=. python benchmarks/scaling.py [--steps 10] [--samples 65536] [--p 2]

Forces 4 host CPU devices (XLA_FLAGS, set here before JAX is imported; it only affects the CPU
backend) and solves the same problem with ``devices`` = 1, 2, 4 CPU devices, for 4 replicas
(replica sharding, mesh (D, 1)) and 2 replicas (on 4 devices the samples of each replica are
split too, mesh (2, 2)). Per device it prints

- ``est``: ``memory_estimate(..., devices=D)["state"]``, the resident arrays the solver keeps;
- ``xla``: the compiled program's own per-device buffer sizes (``memory_analysis()``:
  arguments + outputs + temporaries, which hold the histories), a measurement independent of
  the estimate;

and the wall time of a warm solve (compiled beforehand). ``est`` falls exactly as 1/devices;
``xla`` also holds transients: the draw blocks (constant in N; larger for sample shards, which
draw whole blocks), and, measured here, a buffer of ~0.6x the resident state whenever a device
holds a single replica (also on one device with replicas=1 through the internals, so an XLA
buffer-assignment effect of the size-1 replica vmap, not of sharding; not investigated
further: prefer >= 2 replicas per device). Forced host devices share the host's
cores, so on the CPU the time shows the overhead of sharding, not a speed-up. When a GPU is
the default backend, the one-GPU numbers are printed too.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from jax.sharding import PartitionSpec as P  # noqa: E402

from dmft._devices import global_array, replicated  # noqa: E402
from dmft.model import make_problem  # noqa: E402
from dmft.solver import _sharding, _step, memory_estimate, solve  # noqa: E402
from dmft.solver._solve import replica_keys, validate  # noqa: E402


def xla_bytes(pr, samples, replicas, devs):
    """Per-device bytes of the compiled sweep (arguments + outputs + temporaries)."""
    st = validate(pr, samples, 0, replicas, None, "stein", "float64")
    keys = replica_keys(0, replicas)
    meter = _step.progress_meter(False)
    numbers = pr.numbers(st.kdtype)
    if len(devs) == 1:
        with jax.default_device(devs[0]):
            low = _step.run_sweep.lower(st, numbers, keys, meter)
    else:
        st_l = _sharding.local_structure(st, None, _sharding.mesh_shape(replicas, len(devs))[1])
        mesh = _sharding.make_mesh(devs, replicas)
        dyn, static = eqx.partition(numbers, eqx.is_array)
        kd = global_array(jax.random.key_data(keys), mesh, P("replica"))
        low = _sharding._run.lower(st_l, mesh, replicated(dyn, mesh), static, kd, meter)
    ma = low.lowered.compile().memory_analysis()  # jax's Compiled under equinox's wrapper
    return ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes


def one(pr, samples, replicas, devs):
    kw = dict(samples=samples, replicas=replicas, seed=0, progress=False)
    solve(pr, devices=devs, **kw)  # compile
    t0 = time.perf_counter()
    res = solve(pr, devices=devs, **kw)
    wall = time.perf_counter() - t0
    est = memory_estimate(pr, samples, replicas=replicas, devices=len(devs))["state"]
    return wall, est, xla_bytes(pr, samples, replicas, devs), res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--samples", type=int, default=65536)
    ap.add_argument("--p", type=int, default=2)
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    pr = make_problem("tanh_he3", p=args.p, steps=args.steps)
    cpus = jax.devices("cpu")
    print(f"jax {jax.__version__}; default backend {jax.default_backend()}; T={args.steps}, "
          f"N={args.samples}, p={args.p}, float64, response=stein")
    print(f"{'backend':>7} {'replicas':>8} {'devices':>7} {'mesh':>6} {'time s':>7} "
          f"{'est MB/dev':>10} {'xla MB/dev':>10} {'xla 1/x':>7} {'max|dm| vs 1':>12}")
    for replicas in (4, 2):
        base = None
        for ndev in (1, 2, 4):
            devs = cpus[:ndev]
            wall, est, xla, res = one(pr, args.samples, replicas, devs)
            if base is None:
                base = (xla, res)
            dm = float(abs(res.m.value - base[1].m.value).max())
            mesh = "x".join(map(str, _sharding.mesh_shape(replicas, ndev)))
            print(f"{'cpu':>7} {replicas:>8} {ndev:>7} {mesh:>6} {wall:>7.2f} {est / 1e6:>10.2f} "
                  f"{xla / 1e6:>10.2f} {base[0] / xla:>7.2f} {dm:>12.1e}", flush=True)
    if jax.default_backend() != "cpu":
        for replicas in (4, 2):
            wall, est, xla, _ = one(pr, args.samples, replicas, jax.devices()[:1])
            print(f"{jax.default_backend():>7} {replicas:>8} {1:>7} {'1x1':>6} {wall:>7.2f} "
                  f"{est / 1e6:>10.2f} {xla / 1e6:>10.2f} {1.0:>7.2f} {'':>12}")


if __name__ == "__main__":
    main()
