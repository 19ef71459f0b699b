package dev.lightning.attention.engine.cuda;

import jcuda.CudaException;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Which failures to open a device are the PTX's (remembered for the process's life, blamed on the
 * driver) and which the device's state (tried again by the next task): the names the driver gives
 * its errors (CUresult.stringFor), as JCuda puts them in its exceptions. A GPU's own case, a device
 * whose memory another process took, is TakenDeviceGpuTest.
 */
class OpenFailuresTest {
    @Test
    void onlyThePtxsOwnErrorsBlameThePtx() {
        for (String ptx : new String[] {"CUDA_ERROR_INVALID_PTX", "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
                "CUDA_ERROR_NO_BINARY_FOR_GPU", "CUDA_ERROR_INVALID_IMAGE", "CUDA_ERROR_JIT_COMPILER_NOT_FOUND",
                "CUDA_ERROR_JIT_COMPILATION_DISABLED"}) {
            assertTrue(CudaDevice.refusesPtx(new CudaException(ptx)), ptx);
        }
        for (String state : new String[] {"CUDA_ERROR_OUT_OF_MEMORY", "CUDA_ERROR_DEVICE_UNAVAILABLE",
                "CUDA_ERROR_DEVICE_BUSY", "CUDA_ERROR_ILLEGAL_ADDRESS", "CUDA_ERROR_UNKNOWN"}) {
            assertFalse(CudaDevice.refusesPtx(new CudaException(state)), state);
        }
    }

    @Test
    void aTakenDeviceSaysWhatAndThatLaterTasksTryAgain() {
        String m = CudaDevice.cannotOpen(2, new CudaException("CUDA_ERROR_DEVICE_UNAVAILABLE")).getMessage();
        assertTrue(m.startsWith("cannot open cuda:2 now (CUDA_ERROR_DEVICE_UNAVAILABLE)"), m);
        assertTrue(m.contains("exclusive-process") && m.contains("later tasks try it again"), m);
    }
}
