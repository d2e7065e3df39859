"""Minimal reproducer of a jaxlib CPU deadlock (jax/jaxlib 0.10.1; to report upstream).

Pure JAX, no jaxks: one jitted function with ``--calls`` independent batched ``eigh`` calls.
jaxlib 0.10.x–0.11.0 split a batched LAPACK call whose work (≈ 5 n³ per matrix) reaches 2e5
FLOP over the CPU client's intra-op thread pool and block the calling pool worker until the
pieces are done (``jax::ParallelBatchMap`` in ``jaxlib/cpu/lapack_kernels.cc``, added in jax
commit bfd9e1fbd3, 2026-04-07). XLA:CPU runs independent thunks on the same pool; when every
worker (2 on a 2-core machine) sits in such a call, the pieces they queued have no thread left:
the program never returns. gdb then shows two pool threads in
``jax::EigenvalueDecompositionSymmetric → jax::ParallelBatchMap → absl::BlockingCounter::Wait``,
every other worker idle and the caller in ``BlockUntilReady``. Upstream made the kernels serial
again in open-source builds (jax commit 859992407d, 2026-07-21, after jax 0.11.0; issue
jax-ml/jax#36927); this machine cannot reach GitHub to report it or check a release.

Measured on the 2-core Intel Xeon (jax/jaxlib 0.10.1): ``--n 48 --batch 8 --calls 16`` and
``--n 24 --batch 8`` hung within 100–300 calls; ``--batch 1`` (never split), ``--n 10`` (below
the threshold) completed 300 calls. Exit status 0: completed; the caller's ``timeout`` ends a
hang (status 124)::

    timeout 60 python benchmarks/jax_lapack_hang.py --n 48 --batch 8 --calls 16 --repeat 300
"""

import argparse
import time

import jax
import jax.numpy as jnp


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=48, help="matrix size")
    p.add_argument("--batch", type=int, default=8, help="matrices per eigh call")
    p.add_argument("--calls", type=int, default=16, help="independent eigh calls per program")
    p.add_argument("--repeat", type=int, default=300)
    args = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)

    @jax.jit
    def f(xs):
        return sum(jnp.linalg.eigh(x)[0].sum() for x in xs)

    xs = []
    for key in jax.random.split(jax.random.PRNGKey(0), args.calls):
        a = jax.random.normal(key, (args.batch, args.n, args.n))
        xs.append(a + a.transpose(0, 2, 1))
    print(f"jax {jax.__version__}, {jax.devices()}", flush=True)
    t0 = time.perf_counter()
    for i in range(args.repeat):
        f(xs).block_until_ready()
        if i % 50 == 0:
            print(f"call {i}: {time.perf_counter() - t0:.2f} s", flush=True)
    print(f"completed {args.repeat} calls")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
