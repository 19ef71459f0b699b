// The Hopper kernels (hopper.cuh), built into their own PTX for target sm_90a: wgmma exists only
// there, and such PTX loads only on a device of compute capability 9.0. The host loads it beside
// lightning.ptx when the device is one (CudaDevice.java); build-ptx.sh makes both.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define LIGHTNING_TC_NO_ENTRIES
#include "tensor_core.cuh"
#include "hopper.cuh"
