"""Size of the screened DF tensor of a water cluster (pairs kept at DF_PAIR_CUTOFF, GB, build time,
peak RSS). Usage: python benchmarks/df_pairs.py N"""
import resource
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from common import water_cluster
from jaxks.system import System
from jaxks.integrals import auxmol_for, df_tensor, DF_PAIR_CUTOFF
n = int(sys.argv[1])
mol = System.from_symbols(*water_cluster(n), basis="def2-svp", auxbasis="def2-universal-jkfit", grid_level=2).to_pyscf()
aux = auxmol_for(mol, "def2-universal-jkfit")
t = time.perf_counter()
b, keep = df_tensor(mol, aux, pair_cutoff=DF_PAIR_CUTOFF)
t = time.perf_counter() - t
npair = mol.nao * (mol.nao + 1) // 2
full_gb = b.shape[0] * npair * 8 / 1e9
print(f"(H2O){n}: nao {mol.nao} naux {b.shape[0]} pairs kept {b.shape[1] / npair:.3f} "
      f"tensor {b.nbytes / 1e9:.2f} GB (unscreened {full_gb:.2f} GB), built in {t:.0f} s, "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB", flush=True)
