/*
 * When element-wise loops use OpenMP threads (library-internal).
 *
 * These loops are memory-bound, and right after each GEMM OpenBLAS's own
 * worker threads keep spinning for a while: OpenMP threads started then
 * compete with them for the same cores. Measured on the 2-core reference
 * machine (bench/NOTES.md): ResNet50's forward at batch 1 took 749 ms with
 * a 32k-element threshold and 414 ms with these loops single-threaded
 * (batchnorm 101 → 13 ms). So only very large tensors are split.
 */
#ifndef IAP_CORE_OPS_PARALLEL_H
#define IAP_CORE_OPS_PARALLEL_H

#define IAP_OMP_MIN ((int64_t)1 << 22)

#endif
