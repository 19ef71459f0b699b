// How a module reports the layout of an argument struct to the host: a one-thread kernel writes
// sizeof(struct) and then the offset of every field, in declaration order; the host holds the
// struct's Java mirror against it when it loads the module (ArgStruct.verify through
// CudaDevice.checkArgsLayout), so a header and a mirror that disagree fail at load time instead
// of computing wrong numbers. Used by LightningArgs (lightning_args.cuh), LightningBatchArgs
// (lightning_batch_args.cuh) and SoftmaxArgs (softmax_args.cuh):
//
//   extern "C" __global__ void x_args_layout(int* out) {
//       int i = 0;
//       out[i++] = (int)sizeof(XArgs);
//       ARG_OFFSET(XArgs, first); ARG_OFFSET(XArgs, second); ...
//   }
#pragma once

#ifdef __CUDACC__
#include <cstddef>
#define ARG_OFFSET(S, F) out[i++] = (int)offsetof(S, F)
#endif
