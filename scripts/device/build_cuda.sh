#!/usr/bin/env bash
# Builds `workbench` with `--features cuda` on a machine without a GPU or CUDA toolkit.
#
# Needs the CUDA 13.0 toolchain from PyPI (no system install):
#   pip install "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
#               "nvidia-curand==10.4.0.*"
# (nvcc, its cicc (nvvm) and ptxas must be one release: a newer nvvm writes PTX the 13.0 ptxas
# refuses with "Unsupported .version").
# plus cuBLAS / cuBLASLt / NVRTC / runtime headers and libraries, which `pip install torch` (cu13
# wheels) brings, or `pip install "nvidia-cublas==13.0.*" "nvidia-cuda-nvrtc==13.0.*"
# "nvidia-cuda-runtime==13.0.*"`.
#
# candle-core 0.11 builds cudarc with `dynamic-linking`, so the linker wants `libcuda.so` (the
# driver, absent without a GPU) and unversioned `libcublas.so`, `libcublasLt.so`, `libnvrtc.so`,
# `libcurand.so` (the wheels ship only `*.so.N`). This script makes a link-only folder holding
#   - symlinks to the wheels' real libraries under their unversioned names, and
#   - a stub `libcuda.so` whose SONAME is `libcuda.so.1`, defining every driver entry point
#     (names taken from the preprocessed `cuda.h` and from cudarc's bindings).
# The binary's NEEDED entries are therefore the real SONAMEs (`libcuda.so.1`, `libcublas.so.13`,
# `libcublasLt.so.13`, `libnvrtc.so.13`, `libcurand.so.10`), which the device's driver and CUDA
# 13 libraries provide at run time; the stub is never loaded there.
#
# Usage: scripts/device/build_cuda.sh            (CUDA_COMPUTE_CAP defaults to 90: H100/H200)
# Output: target-cuda/release/workbench
set -euo pipefail
cd "$(dirname "$0")/../.."

site=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null) || {
    echo "build_cuda.sh: no python 'nvidia' wheels found; pip install the packages listed at the top of $0" >&2
    exit 2
}
N=$site/nvidia/cu13
[ -x "$N/bin/nvcc" ] || { echo "build_cuda.sh: $N/bin/nvcc missing: pip install \"nvidia-cuda-nvcc==13.0.*\"" >&2; exit 2; }

link=${CARGO_TARGET_DIR:-target-cuda}/link-stubs
mkdir -p "$link"
for lib in cublas cublasLt nvrtc curand cudart; do
    real=$(ls "$N"/lib/lib$lib.so.* 2>/dev/null | grep -E "lib$lib\.so\.[0-9]+$" | head -1) || true
    [ -n "$real" ] || { echo "build_cuda.sh: lib$lib.so.* not in $N/lib (see the pip packages at the top of $0)" >&2; exit 2; }
    ln -sfn "$real" "$link/lib$lib.so"
done

# The driver stub: every cu* entry point, each a function returning CUDA_ERROR_STUB_LIBRARY (34),
# so a stub that somehow got loaded fails loudly instead of doing nothing.
cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | tail -1)
if [ -z "$cudarc" ]; then
    cargo fetch --locked >/dev/null
    cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | tail -1)
fi
{
    gcc -E -P -I"$N/include" "$N/include/cuda.h"
    cat "$cudarc/src/driver/sys/mod.rs"
} | grep -oE '\bcu[A-Z][A-Za-z0-9_]*' | sort -u |
    awk '{ printf "int %s(void) { return 34; }\n", $1 }' > "$link/cuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/libcuda.so" "$link/cuda_stub.c"

export PATH=$N/bin:$PATH CUDA_ROOT=$N CUDA_PATH=$N CUDA_HOME=$N
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$PWD/$link"
export LIBRARY_PATH="$PWD/$link${LIBRARY_PATH:+:$LIBRARY_PATH}"
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-cuda} cargo build --release --locked --features cuda --bin workbench
bin=${CARGO_TARGET_DIR:-target-cuda}/release/workbench
echo "built $bin; it needs at run time:"
readelf -d "$bin" | grep NEEDED | sed 's/^/  /'
