# kernels/cuda.mk -- CUDA build fragment for pgbert.
#
# Contract with the top-level PGXS Makefile (included only when USE_CUDA=1,
# before `include $(PGXS)`, from the source root, in-tree builds only):
#
#     ifeq ($(USE_CUDA),1)
#     include kernels/cuda.mk
#     OBJS        += $(CUDA_OBJS)
#     SHLIB_LINK  += $(CUDA_LIBS)
#     PG_CPPFLAGS += -DPGBERT_USE_CUDA
#     endif
#
# What this file provides:
#   NVCC, CUDA_HOME   overridable tool/toolkit locations
#   CUDA_SRCS         every kernels/*.cu
#   CUDA_OBJS         their .o files (position independent, default symbol
#                     visibility, so the C side of the .so links against the
#                     pgbert_gpu_* functions declared in kernels/gpu.h)
#   CUDA_LIBS         cuBLAS + CUDA runtime, with an rpath to $(CUDA_HOME)/lib64
#   NVCC_FLAGS        sm_80 and sm_90 SASS plus compute_90 PTX (JIT for newer GPUs)
#   kernels/%.o       compiled from kernels/%.cu with $(NVCC)
#   kernels/%.bc      stub LLVM bitcode, see below
#
# Rules for code in kernels/: the .cu files and gpu.h include no PostgreSQL
# header (PostgreSQL's float4 typedef clashes with CUDA's float4), and gpu.h
# stays plain C with no CUDA types.
#
# The .so is linked by PGXS with $(CC); the .cu objects use no C++ runtime
# (no exceptions, no RTTI), so -lstdc++ is not needed.

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
              -Xcompiler -fno-exceptions -Xcompiler -fno-rtti \
              -Xcompiler -Wall -Xcompiler -Wextra \
              $(CUDA_GENCODE)

kernels/%.o: kernels/%.cu kernels/gpu.h
	$(NVCC) $(NVCC_FLAGS) -I kernels -c $< -o $@

# PostgreSQL built --with-llvm makes PGXS build (`all`) and install
# (`install_llvm_module`, which runs llvm-lto on them) a .bc file for every
# entry of OBJS.  CUDA code cannot be inlined by the JIT, so each .cu gets an
# empty but valid ThinLTO bitcode module.  $(CLANG) comes from PGXS.
kernels/%.bc: kernels/%.cu
	echo '/* no JIT-inlinable code: $< is CUDA */' | $(CLANG) -x c -flto=thin -emit-llvm -c - -o $@
