#!/usr/bin/env bash
# build/pgbert_gpu_emu.so: pgbert_gpu.so built from kernels/*.cu as they are now, rewritten by
# extract.py for the host emulator (emu.h), over a host CUDA runtime and cuBLAS
# (fake_cuda.cpp); gpu_flash.cu's inline PTX (mma.sync, ldmatrix) runs as emu.h's warp collectives.
# Then the programs that test pgbert_gpu.so through dlopen run against it:
#   test/gpu/emu/library.sh            build, then run test_gpu_model and test_gpu_train
#   test/gpu/emu/library.sh --build    build only
set -euo pipefail
cd "$(dirname "$0")/../../.."
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
CXX=${CXX:-g++}
out=build/gpu-emu-lib
mkdir -p "$out"
flags=(-std=c++20 -O2 -g -fPIC -ffp-contract=off -pthread -Wall -Wextra -Wno-unused-parameter -Wno-attributes -Wno-unknown-pragmas -Wno-class-memaccess
       -isystem "$CUDA_HOME/include" -Ikernels -Itest/gpu/emu)
srcs=(gpu_gemm gpu_device gpu_batch_plan gpu_model gpu_flash gpu_train
      gpu_embeddings gpu_layernorm gpu_gelu gpu_attention gpu_head gpu_dense gpu_optimizer)
objs=()
pids=()
for k in "${srcs[@]}"; do
  python3 test/gpu/emu/extract.py "kernels/$k.cu" "$out/$k.cpp"
done
build() {  # src obj: recompiled when src or a header is newer
  if [ ! -e "$2" ] || [ -n "$(find "$1" kernels/*.h kernels/*.cuh test/gpu/emu/emu.h -newer "$2" 2>/dev/null | head -1)" ]; then
    "$CXX" "${flags[@]}" -c "$1" -o "$2"
  fi
}
jobs=${EMU_JOBS:-$(nproc)}
for s in "${srcs[@]/#/$out/}" test/gpu/emu/emu test/gpu/emu/fake_cuda; do
  o="$out/$(basename "$s").o"; objs+=("$o")
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  build "$s.cpp" "$o" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
"$CXX" "${flags[@]}" -shared -o build/pgbert_gpu_emu.so "${objs[@]}"
[ "${1:-}" = --build ] && exit 0
export PGBERT_GPU_LIBRARY=$PWD/build/pgbert_gpu_emu.so
build/test_gpu_model test/fixtures/models
build/test_gpu_train test/fixtures/models
