# kernels/cuda.mk -- CUDA build fragment for pgbert.
#
# Contract with the top-level PGXS Makefile (included only when USE_CUDA=1,
# before `include $(PGXS)`, from the source root, in-tree builds only): the
# top-level Makefile links $(CUDA_OBJS) with $(CUDA_LIBS) into pgbert_gpu.so,
# a library of its own, so that backends loading pgbert.so never load cuBLAS.
#
# What this file provides:
#   NVCC, CUDA_HOME   overridable tool/toolkit locations
#   CUDA_SRCS         every kernels/*.cu
#   CUDA_OBJS         their .o files (position independent, default symbol
#                     visibility: pgbert_gpu.so exports the pgbert_gpu_*
#                     functions declared in kernels/gpu.h)
#   CUDA_LIBS         cuBLAS + CUDA runtime, with an rpath to $(CUDA_HOME)/lib64
#   NVCC_FLAGS        sm_80 and sm_90 SASS plus compute_90 PTX (JIT for newer GPUs)
#   kernels/%.o       compiled from kernels/%.cu with $(NVCC)
#
# Rules for code in kernels/: the .cu files and gpu.h include no PostgreSQL
# header (PostgreSQL's float4 typedef clashes with CUDA's float4), and gpu.h
# stays plain C with no CUDA types.
#
# The library is linked with $(CC); the .cu objects use no C++ runtime
# (no exceptions, no RTTI, no guarded statics: nvcc registers template kernels
# through function-local statics), so -lstdc++ is not needed; test_gpu_model
# fails when the library does not load.

NVCC      ?= /usr/local/cuda/bin/nvcc
CUDA_HOME ?= /usr/local/cuda

CUDA_SRCS := $(wildcard kernels/*.cu)
CUDA_OBJS := $(CUDA_SRCS:.cu=.o)
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart

CUDA_GENCODE := -gencode arch=compute_80,code=sm_80 \
                -gencode arch=compute_90,code=sm_90 \
                -gencode arch=compute_90,code=compute_90

NVCC_FLAGS  = -O3 -std=c++17 \
              -Xcompiler -fPIC \
              -Xcompiler -fno-exceptions -Xcompiler -fno-rtti -Xcompiler -fno-threadsafe-statics \
              -Xcompiler -Wall -Xcompiler -Wextra \
              $(CUDA_GENCODE)

kernels/%.o: kernels/%.cu kernels/gpu.h kernels/gpu_errors.h kernels/gpu_internal.h \
             kernels/gpu_model_internal.h kernels/gpu_train_internal.h kernels/gpu_flash.h \
             kernels/gpu_device_helpers.cuh kernels/gpu_layer_helpers.cuh kernels/gpu_batch_plan.h
	$(NVCC) $(NVCC_FLAGS) -I kernels -c $< -o $@
