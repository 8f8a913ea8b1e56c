"""Infrastructure every floor uses: errors, atomic writes, threads, progress, keys, Dask, study records.

It imports nothing else of the product. Importing it points numba's disk cache at a directory of
this version of the source (:mod:`infra.numbacache`); every package with kernels imports it
(through ``hw``) before it defines one, and makes a kernel that several processes miss in that
cache at once compiled by one of them (:mod:`infra.compilelock`), without loading numba's
third-party extensions (:mod:`infra.numbaext`).
"""

from infra import compilelock, numbacache, numbaext

numbacache.configure()
compilelock.install()
numbaext.skip()
