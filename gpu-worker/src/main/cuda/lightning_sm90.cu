// The Hopper kernels (hopper.cuh), built into their own PTX for target sm_90a: wgmma exists only
// there, and such PTX loads only on a device of compute capability 9.0. The host loads it beside
// lightning.ptx when the device is one (CudaDevice.java); build-ptx.sh makes both.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "lightning_args.cuh"
#include "lightning_common.cuh"
#include "hopper.cuh"

// The Hopper kernels' launch shapes, reported like lightning_launch_shapes (lightning.cu). One thread.
//   out[0] LIGHTNING_WG_COLUMNS   out[1] LIGHTNING_WG_THREADS   out[2] LIGHTNING_WG_MAX_DK
//   out[3] LIGHTNING_WG_PAIR_D (the paired kernels' dk = dv; their states kernel's shared memory is the
//          states kernel's at that dk)
//   out[4] the paired forward kernel's dynamic shared memory (without the masked S tiles of the unpaired one)
//   out[LIGHTNING_SHAPES_DK + dk]      the forward kernel's dynamic shared memory, dk = 1..LIGHTNING_WG_MAX_DK
//   out[2 * LIGHTNING_SHAPES_DK + dk]  the states kernel's
extern "C" __global__ void lightning_wg_launch_shapes(int* out) {
    out[0] = LIGHTNING_WG_COLUMNS;
    out[1] = LIGHTNING_WG_THREADS;
    out[2] = LIGHTNING_WG_MAX_DK;
    out[3] = LIGHTNING_WG_PAIR_D;
    out[4] = lightning_wg_smem_bytes(LIGHTNING_WG_PAIR_D, 1, true);
    for (int dk = 1; dk <= LIGHTNING_WG_MAX_DK; dk++) {
        out[LIGHTNING_SHAPES_DK + dk] = lightning_wg_smem_bytes(dk, 1);
        out[2 * LIGHTNING_SHAPES_DK + dk] = lightning_wg_smem_bytes(dk, 0);
    }
}
