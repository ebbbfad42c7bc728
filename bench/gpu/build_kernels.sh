#!/usr/bin/env bash
# Builds the CUDA kernels, their [cuda] tests and the GPU bench by hand with
# nvcc, independent of the Makefile's CUDA=1 build (a fallback and the exact
# commands). Needs build/libminispeed.a (the CPU library: the tests compare
# against the cpu:: twins) and nvcc. Outputs under build/cuda-kernels/:
#   cuda_kernel_tests   (Catch2; "[cuda]" runs all, "[host]" the checks that need no GPU)
#   bench_gpu_kernels   (JSON lines; bench/gpu/torch_peer.py --ours <it> prints ratios)
#
#   bench/gpu/build_kernels.sh            # sm_90 (H100/H200) + PTX for sm_80+
#   NVCC_ARCH="-arch=sm_80" bench/gpu/build_kernels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
ARCH=${NVCC_ARCH:--gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80}
OUT=build/cuda-kernels
mkdir -p "$OUT"

make -j"$(nproc)" build/libminispeed.a build/obj/tests/main.o

CATCH_FLAGS="" CATCH_LIBS=""
if [ -e /usr/include/catch2/catch_all.hpp ] || [ -e /usr/local/include/catch2/catch_all.hpp ]; then
  CATCH_FLAGS="-DMS_CATCH2_V3" CATCH_LIBS="-lCatch2"
fi

objs=()
for f in tensor/cuda/*.cu; do
  o="$OUT/$(basename "${f%.cu}").o"
  "$NVCC" -std=c++20 -O3 $ARCH -I. -DMS_CUDA=1 -c "$f" -o "$o" &
  objs+=("$o")
done
wait
for t in tests/cuda/test_cuda_kernels*.cpp; do
  g++ -std=c++20 -O2 -Wall -Wextra -I. -I"$CUDA_HOME/include" $CATCH_FLAGS -DOMPI_SKIP_MPICXX \
    -c "$t" -o "$OUT/$(basename "${t%.cpp}").o" &
done
"$NVCC" -std=c++20 -O3 $ARCH -I. -DMS_CUDA=1 -c bench/gpu/bench_gpu_kernels.cu \
  -o "$OUT/bench_gpu_kernels.o" &
wait

LIBS="build/libminispeed.a $(mpicxx --showme:link 2>/dev/null | sed 's/-lmpi_cxx//') -lpthread \
  -L$CUDA_HOME/lib64 -lcudart -lcublas -lcublasLt -Wl,-rpath,$CUDA_HOME/lib64"
g++ -O3 -fopenmp "$OUT"/test_cuda_kernels*.o build/obj/tests/main.o "${objs[@]}" $LIBS $CATCH_LIBS \
  -o "$OUT/cuda_kernel_tests"
g++ -O3 -fopenmp "$OUT/bench_gpu_kernels.o" "${objs[@]}" $LIBS -o "$OUT/bench_gpu_kernels"
echo "built $OUT/cuda_kernel_tests and $OUT/bench_gpu_kernels"
