/*
 * How element-wise loops split over threads (library-internal).
 *
 * Every OpenMP loop in the ops asks iap_par_nt(elements) for its team size:
 * one thread per IAP_PAR_GRAIN elements, up to the engine's thread count
 * (<iaprune/threads.h>). There used to be a fixed 4M-element threshold here,
 * tuned on two cores to keep these loops away from OpenBLAS's spinning
 * pthread workers; now OpenBLAS runs on the OpenMP team's own threads
 * (iap_sgemm()), so the only cost left is the fork/join, which the grain
 * pays for at any thread count.
 */
#ifndef IAP_CORE_OPS_PARALLEL_H
#define IAP_CORE_OPS_PARALLEL_H

#include <iaprune/threads.h>


#endif
