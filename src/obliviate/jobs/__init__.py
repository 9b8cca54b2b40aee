"""``obliviate bench``: a benchmark runner over methods x grid x seeds.

The infrastructure layer is ML-free: ``store`` keeps finished jobs under the content hash of their spec (atomic,
verified, crash-safe), ``executors`` run picklable callables inline, in a process pool or on Ray. Nothing heavy
(torch, ray) is imported here, so ``import obliviate.jobs`` stays cheap.
"""
