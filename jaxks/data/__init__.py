"""Water datasets: geometry sampling, DFT labelling, the on-disk format, DeePKS-kit interop.

Modules (imported on demand; nothing heavy here):

* :mod:`jaxks.data.forcefield` – SPC/Fw water and Langevin dynamics in JAX (geometry source)
* :mod:`jaxks.data.sampling`   – ``sample_water(n, frames, seed)``: monomers and (H2O)_n clusters
* :mod:`jaxks.data.readers`    – ``read_frames(path)``: xyz/extxyz, DeePKS-kit folders, ASE, builtin:NAME
* :mod:`jaxks.data.labels`     – ``LabelSettings``, ``pyscf_label(system, settings)`` (pluggable)
* :mod:`jaxks.data.store`      – the dataset folder format, ``Dataset`` (lazy reading)
* :mod:`jaxks.data.pipeline`   – ``label_frames`` (parallel, resumable)
* :mod:`jaxks.data.deepkskit`  – DeePKS-kit folders: read/write, ``export_deepkskit``,
  ``export_descriptors`` (all the DeePKS-kit format code)
* :mod:`jaxks.data.builtin`    – the shipped geometry sets (xyz files), ``builtin_path(name)``
* :mod:`jaxks.data.datasets`   – built-in sets as systems and labels, ``builtin_frames(name)``
"""
