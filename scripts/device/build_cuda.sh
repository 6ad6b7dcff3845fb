#!/usr/bin/env bash
# Builds `workbench` with `--features cuda` on a machine with no GPU and no CUDA install.
#
# The CUDA 13.0 toolchain comes from PyPI wheels, installed (once, ~1.2 GB) into a folder of
# their own with `pip install --no-deps --target`, so that nothing else on the machine (e.g. a
# torch whose cu13 wheels are a newer 13.x) changes, and so that compiler, device-code compiler
# (nvvm/cicc), ptxas, CCCL and the runtime headers are one release: a newer nvvm writes PTX that
# the 13.0 ptxas refuses ("Unsupported .version"), and CCCL refuses runtime headers of another
# release ("CUDA compiler and CUDA toolkit headers are incompatible").
#
# candle-core 0.11 builds cudarc with `dynamic-linking`, so the linker wants `libcuda.so` (the
# driver, absent without a GPU) and unversioned `libcublas.so`, `libcublasLt.so`, `libnvrtc.so`,
# `libcurand.so` (the wheels ship only `*.so.N`). A link-only folder holds
#   - symlinks to the wheels' real libraries under their unversioned names, and
#   - a stub `libcuda.so` with SONAME `libcuda.so.1` defining every driver entry point (names
#     from the preprocessed `cuda.h` and cudarc's bindings), each returning error 34
#     (CUDA_ERROR_STUB_LIBRARY) should it ever be loaded.
# The binary's NEEDED entries are the real SONAMEs (`libcuda.so.1`, `libcublas.so.13`,
# `libcublasLt.so.13`, `libnvrtc.so.13`, `libcurand.so.10`), which a GPU machine's driver and CUDA
# 13 libraries provide at run time; the stub never travels with the binary.
#
# Usage: scripts/device/build_cuda.sh
#   CUDA_COMPUTE_CAP (default 90: H100/H200), CARGO_TARGET_DIR (default target-cuda),
#   CUDA_WHEELS (default $CARGO_TARGET_DIR/cuda-wheels: where the wheels are installed).
# Output: $CARGO_TARGET_DIR/release/workbench, and $CARGO_TARGET_DIR/device/workbench.gz (stripped
# and gzipped, ~19 MB: what the device tool carries; scripts/device/check.sh unpacks it).
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${CARGO_TARGET_DIR:-target-cuda}
mkdir -p "$target"
target=$(cd "$target" && pwd)
wheels=${CUDA_WHEELS:-$target/cuda-wheels}
N=$wheels/nvidia/cu13
if [ ! -x "$N/bin/nvcc" ]; then
    echo "installing the CUDA 13.0 wheels into $wheels" >&2
    python3 -m pip install --quiet --no-deps --target "$wheels" \
        "nvidia-cuda-nvcc==13.0.88" "nvidia-nvvm==13.0.88" "nvidia-cuda-crt==13.0.88" \
        "nvidia-cuda-cccl==13.0.85" "nvidia-cuda-runtime==13.0.96" "nvidia-cublas==13.0.2.14" \
        "nvidia-cuda-nvrtc==13.0.88" "nvidia-curand==10.4.0.35"
fi

link=$target/link-stubs
mkdir -p "$link"
for lib in cublas cublasLt nvrtc curand cudart; do
    real=$(ls "$N"/lib/lib$lib.so.* 2>/dev/null | grep -E "/lib$lib\.so\.[0-9]+$" | head -1 || true)
    [ -n "$real" ] || { echo "build_cuda.sh: no lib$lib.so.N in $N/lib" >&2; exit 2; }
    ln -sfn "$real" "$link/lib$lib.so"
done

cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | tail -1 || true)
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
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$link"
CARGO_TARGET_DIR=$target cargo build --release --locked --features cuda --bin workbench
bin=$target/release/workbench
echo "built $bin (compute capability $CUDA_COMPUTE_CAP); it loads at run time:"
readelf -d "$bin" | grep NEEDED | sed 's/^ */  /'
mkdir -p "$target/device"
strip -o "$target/device/workbench" "$bin"
gzip -9 -f "$target/device/workbench"
echo "for the device: $target/device/workbench.gz ($(du -h "$target/device/workbench.gz" | cut -f1))"
