/*
 * gpu_backend.h - the engine's door to the CUDA backend, pgbert_gpu.so.
 *
 * The library is opened with dlopen when a process asks for the GPU, never
 * linked: a CPU-only build or machine needs no CUDA library, and only the
 * engine process (never a PostgreSQL backend or the postmaster) initializes
 * CUDA. Models are uploaded from the engine's float32 parameters, whose
 * single allocation the device copy mirrors. PostgreSQL-free.
 */
#ifndef PGBERT_GPU_BACKEND_H
#define PGBERT_GPU_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "gpu.h"
#include "model.h"

typedef struct BtGpu BtGpu;

/*
 * Open the library (library, or $PGBERT_GPU_LIBRARY, or pgbert_gpu.so beside
 * the running program) and device 0, with matrix products in precision
 * ("bf16" or "fp32") and device memory bounded by memory_limit bytes (0: the
 * card's). NULL + err when there is no library, no device or CUDA fails.
 */
extern BtGpu *bt_gpu_open(const char *library, const char *precision, size_t memory_limit,
						  char *err, size_t errlen);

extern void bt_gpu_close(BtGpu *g);

/* The loaded library's function table (the training half is reached through it). */
extern const PgbertGpuApi *bt_gpu_api(const BtGpu *g);

/* "NVIDIA H200 (sm_90, 139.8 GiB), bf16" and the like. */
extern const char *bt_gpu_describe(const BtGpu *g);

/* Bound the device memory (bytes; 0: the card's); a request past it fails alone. */
extern void bt_gpu_set_memory_limit(BtGpu *g, size_t bytes);

/* Device bytes in use (weights, activations, workspace). */
extern size_t bt_gpu_memory_used(const BtGpu *g);

/* Copy m's parameters to the device; NULL + err (out of device memory included). */
extern PgbertGpuModel *bt_gpu_upload(BtGpu *g, const BtBertModel *m, char *err, size_t errlen);

extern void bt_gpu_free_model(BtGpu *g, PgbertGpuModel *gm);

/*
 * Forward pass of batch on the device: n_seq rows of want (PgbertGpuWant,
 * the same codes as BtWant) into out. 0, or -1 + err.
 */
extern int	bt_gpu_forward(BtGpu *g, PgbertGpuModel *gm, const BtBatch *batch, int want, float *out,
						   char *err, size_t errlen);

/* CUDA graph capture of repeated shapes on or off (tests compare both). */
extern void bt_gpu_use_graphs(BtGpu *g, PgbertGpuModel *gm, bool on);

/* The error message reports exhausted device memory (a per-request error). */
extern bool bt_gpu_out_of_memory(const char *message);

#endif
