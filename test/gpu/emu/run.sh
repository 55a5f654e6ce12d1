#!/usr/bin/env bash
# The row kernels of the layers' files (kernels/gpu_embeddings.cu, gpu_layernorm.cu,
# gpu_gelu.cu, gpu_attention.cu, gpu_head.cu, gpu_dense.cu, gpu_optimizer.cu) under host
# emulation (no GPU needed: g++ with C++20 and the CUDA toolkit's headers): extract.py rewrites the .cu files as they are now, test_kernels.cpp runs them through
# their launchers against double references. Built with AddressSanitizer and UBSan, so a
# kernel reading or writing outside its buffers fails too.
#   test/gpu/emu/run.sh [name]   (only the kernels whose name contains name)
# Prints ok/FAIL per case and "N passed, N failed"; exits nonzero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../../.."
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
CXX=${CXX:-g++}
out=build/gpu-emu
# EMU_SANITIZE= (empty) builds without the sanitizers
sanitize=${EMU_SANITIZE-"-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"}
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -ffp-contract=off -pthread -Wall -Wextra -Wno-unused-parameter -Wno-attributes
       $sanitize
       -isystem "$CUDA_HOME/include" -Ikernels -Isrc/engine -Itest/gpu/emu)

pids=()
layers=(gpu_embeddings gpu_layernorm gpu_gelu gpu_attention gpu_head gpu_dense gpu_optimizer)
for k in "${layers[@]}"; do
  python3 test/gpu/emu/extract.py "kernels/$k.cu" "$out/$k.cpp"
  "$CXX" "${flags[@]}" -c "$out/$k.cpp" -o "$out/$k.o" & pids+=($!)
done
"$CXX" "${flags[@]}" -c test/gpu/emu/emu.cpp -o "$out/emu.o" & pids+=($!)
"$CXX" "${flags[@]}" -c test/gpu/emu/test_kernels.cpp -o "$out/test_kernels.o" & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
"$CXX" "${flags[@]}" -o "$out/test_kernels" "$out"/{test_kernels,emu}.o $(printf "$out/%s.o " "${layers[@]}")
# thousands of short-lived threads: keep ASan's per-thread bookkeeping small
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:malloc_context_size=5} "$out/test_kernels" "$@"
