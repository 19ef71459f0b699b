#!/usr/bin/env python3
"""How long the CUDA driver takes to load each kernel module on this GPU, from its PTX (compiled by the
driver at load) and from the fat binary the build makes with LIGHTNING_SASS (SASS for this GPU: nothing
to compile). Each load runs in a fresh process with the driver's compute cache off
(CUDA_CACHE_DISABLE=1), which is what the first run on a fresh machine or container pays.

    bench/module_load.py PTX_DIR FATBIN_DIR [RUNS]

PTX_DIR holds the committed NAME.ptx, FATBIN_DIR the NAME.fatbin of build-ptx.sh; prints one line per
module and image: the median load time of RUNS (default 3) processes, and the kernels the module has.
"""
import ctypes
import os
import statistics
import subprocess
import sys
import time

MODULES = ["lightning", "lightning_sm90a", "softmax", "softmax_sm90a", "lightning_batch"]


def load_once(path):
    """In this process: create a context, load the module, return (ms, kernel count)."""
    cu = ctypes.CDLL("libcuda.so.1")

    def check(rc, what):
        if rc != 0:
            name = ctypes.c_char_p()
            cu.cuGetErrorName(rc, ctypes.byref(name))
            raise RuntimeError(f"{what}: {name.value.decode() if name.value else rc}")

    check(cu.cuInit(0), "cuInit")
    dev = ctypes.c_int()
    check(cu.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
    ctx = ctypes.c_void_p()
    check(cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
    check(cu.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    data = open(path, "rb").read()
    if path.endswith(".ptx"):
        data += b"\0"
    mod = ctypes.c_void_p()
    t0 = time.perf_counter()
    check(cu.cuModuleLoadData(ctypes.byref(mod), ctypes.c_char_p(data)), "cuModuleLoadData " + path)
    ms = (time.perf_counter() - t0) * 1e3
    count = ctypes.c_uint()
    kernels = -1
    if hasattr(cu, "cuModuleGetFunctionCount") and cu.cuModuleGetFunctionCount(ctypes.byref(count), mod) == 0:
        kernels = count.value
    return ms, kernels


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--one":
        ms, kernels = load_once(sys.argv[2])
        print(f"{ms:.1f} {kernels}")
        return
    ptx_dir, fat_dir = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    env = dict(os.environ, CUDA_CACHE_DISABLE="1")
    print(f"module load times, driver cache off, median of {runs} fresh processes")
    failed = False
    for m in MODULES:
        for kind, path in (("ptx", os.path.join(ptx_dir, m + ".ptx")), ("fatbin", os.path.join(fat_dir, m + ".fatbin"))):
            if not os.path.exists(path):
                print(f"RESULT module={m} image={kind} missing")
                continue
            times = []
            kernels = -1
            for _ in range(runs):
                r = subprocess.run([sys.executable, __file__, "--one", path], env=env, capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"RESULT module={m} image={kind} FAILED: {r.stderr.strip()[-300:]}")
                    failed = True
                    break
                ms, kernels = r.stdout.split()
                times.append(float(ms))
            if times:
                print(f"RESULT module={m} image={kind} bytes={os.path.getsize(path)} kernels={kernels} "
                      f"load_ms={statistics.median(times):.1f} (runs: {', '.join(f'{t:.0f}' for t in times)})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
