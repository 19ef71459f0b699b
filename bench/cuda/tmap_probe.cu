// Can a TMA tensor map be made on the device from zeros by tensormap.replace alone (JCuda 12.6.0 binds no
// cuTensorMapEncodeTiled, so the Java host cannot encode one)? For a bf16 tensor [200, 3, 72] (rows of 432
// bytes, Dk not a multiple of 64): the driver's map of it (3-D, box {64, 1, 64}, 128-byte swizzle) is copied to
// the device and each field replaced there with candidate encodings, to find the one that leaves its bytes
// unchanged; then a map is made from zeros with those, compared byte by byte, and both load the 12 boxes of
// the tensor (both column atoms, every head, a box cut by the tensor's end) into shared memory by
// cp.async.bulk.tensor, each element checked against the swizzled layout the Hopper kernels use.
//   nvcc -O2 -gencode=arch=compute_90a,code=sm_90a -o tmap_probe bench/cuda/tmap_probe.cu -lcuda && ./tmap_probe
// Result on an H200 (driver 580.159.04, 2026-12-04): bench/results/2026-12-04-h200-s11-tmap-probe.log.
#include <cuda.h>
#include <cstdio>
#include <cstring>
#include <vector>
#define CK(x) do { CUresult r_ = (x); if (r_ != CUDA_SUCCESS) { const char* s; cuGetErrorString(r_, &s); printf("FAIL %s: %s\n", #x, s); return 1; } } while (0)

// op: 0 addr, 1 rank, 2 box(ord), 3 gdim(ord), 4 gstride(ord), 5 estride(ord), 6 elemtype(val imm), 7 interleave0,
// 8 swizzle(val imm), 9 atomicity0, 10 fill0
template <int ORD> __device__ void rep_ord(unsigned char* tm, int op, unsigned long long v) {
  if (op == 2) asm volatile("tensormap.replace.tile.box_dim.global.b1024.b32 [%0], %1, %2;" :: "l"(tm), "n"(ORD), "r"((unsigned)v) : "memory");
  if (op == 3) asm volatile("tensormap.replace.tile.global_dim.global.b1024.b32 [%0], %1, %2;" :: "l"(tm), "n"(ORD), "r"((unsigned)v) : "memory");
  if (op == 4) asm volatile("tensormap.replace.tile.global_stride.global.b1024.b64 [%0], %1, %2;" :: "l"(tm), "n"(ORD), "l"(v) : "memory");
  if (op == 5) asm volatile("tensormap.replace.tile.element_stride.global.b1024.b32 [%0], %1, %2;" :: "l"(tm), "n"(ORD), "r"((unsigned)v) : "memory");
}
__device__ void rep(unsigned char* tm, int op, int ord, unsigned long long v) {
  switch (op) {
    case 0: asm volatile("tensormap.replace.tile.global_address.global.b1024.b64 [%0], %1;" :: "l"(tm), "l"(v) : "memory"); break;
    case 1: asm volatile("tensormap.replace.tile.rank.global.b1024.b32 [%0], %1;" :: "l"(tm), "r"((unsigned)v) : "memory"); break;
    case 2: case 3: case 4: case 5:
      if (ord == 0) rep_ord<0>(tm, op, v); else if (ord == 1) rep_ord<1>(tm, op, v); else rep_ord<2>(tm, op, v); break;
    case 6:
      if (v == 9) asm volatile("tensormap.replace.tile.elemtype.global.b1024.b32 [%0], 9;" :: "l"(tm) : "memory");
      else if (v == 10) asm volatile("tensormap.replace.tile.elemtype.global.b1024.b32 [%0], 10;" :: "l"(tm) : "memory");
      else if (v == 6) asm volatile("tensormap.replace.tile.elemtype.global.b1024.b32 [%0], 6;" :: "l"(tm) : "memory");
      else if (v == 1) asm volatile("tensormap.replace.tile.elemtype.global.b1024.b32 [%0], 1;" :: "l"(tm) : "memory");
      break;
    case 7: asm volatile("tensormap.replace.tile.interleave_layout.global.b1024.b32 [%0], 0;" :: "l"(tm) : "memory"); break;
    case 8:
      if (v == 3) asm volatile("tensormap.replace.tile.swizzle_mode.global.b1024.b32 [%0], 3;" :: "l"(tm) : "memory");
      else if (v == 0) asm volatile("tensormap.replace.tile.swizzle_mode.global.b1024.b32 [%0], 0;" :: "l"(tm) : "memory");
      break;
    case 10: asm volatile("tensormap.replace.tile.fill_mode.global.b1024.b32 [%0], 0;" :: "l"(tm) : "memory"); break;
  }
}
struct Op { int op, ord; unsigned long long v; };
__global__ void apply(unsigned char* tm, const Op* ops, int n, int zero) {
  if (threadIdx.x != 0) return;
  if (zero) for (int i = 0; i < 128; ++i) tm[i] = 0;
  for (int i = 0; i < n; ++i) rep(tm, ops[i].op, ops[i].ord, ops[i].v);
  asm volatile("fence.proxy.tensormap::generic.release.gpu;" ::: "memory");
}
__global__ void load(const void* tm, unsigned char* out, int c0, int c1, int c2) {
  __shared__ __align__(1024) unsigned char buf[8192];
  __shared__ __align__(8) unsigned long long bar;
  unsigned b = (unsigned)__cvta_generic_to_shared(&bar), s = (unsigned)__cvta_generic_to_shared(buf);
  if (threadIdx.x == 0) {
    asm volatile("fence.proxy.tensormap::generic.acquire.gpu [%0], 128;" :: "l"(tm) : "memory");
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(b));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], 8192;" :: "r"(b) : "memory");
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];"
                 :: "r"(s), "l"(tm), "r"(c0), "r"(c1), "r"(c2), "r"(b) : "memory");
    asm volatile("{ .reg .pred p; W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], 0; @!p bra W; }" :: "r"(b) : "memory");
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 8192; i += blockDim.x) out[i] = buf[i];
}
int main() {
  CK(cuInit(0)); CUdevice dev; CK(cuDeviceGet(&dev, 0)); CUcontext ctx; CK(cuDevicePrimaryCtxRetain(&ctx, dev)); CK(cuCtxSetCurrent(ctx));
  const int T = 200, H = 3, D = 72;
  std::vector<unsigned short> host(T * H * D);
  for (size_t i = 0; i < host.size(); ++i) host[i] = (unsigned short)(i * 7 + 1);
  CUdeviceptr g, tms, ops, out; CK(cuMemAlloc(&g, host.size() * 2)); CK(cuMemcpyHtoD(g, host.data(), host.size() * 2));
  CK(cuMemAlloc(&tms, 1024)); CK(cuMemAlloc(&ops, 64 * sizeof(Op))); CK(cuMemAlloc(&out, 8192));
  cuuint64_t dims[3] = {D, H, T}, strides[2] = {D * 2, (cuuint64_t)H * D * 2};
  cuuint32_t box[3] = {64, 1, 64}, es[3] = {1, 1, 1};
  alignas(64) CUtensorMap ref;
  CK(cuTensorMapEncodeTiled(&ref, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void*)g, dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
  unsigned char refb[128]; memcpy(refb, &ref, 128);
  printf("ref:"); for (int i = 0; i < 128; ++i) printf("%s%02x", i % 16 ? "" : "\n  ", refb[i]); printf("\n");
  auto run = [&](const std::vector<Op>& v, bool zero, unsigned char* res) -> int {
    CK(cuMemcpyHtoD(tms, refb, 128)); CK(cuMemcpyHtoD(ops, v.data(), v.size() * sizeof(Op)));
    int n = (int)v.size(), z = zero ? 1 : 0;
    apply<<<1, 32>>>((unsigned char*)tms, (const Op*)ops, n, z);
    CK(cuCtxSynchronize()); CK(cuMemcpyDtoH(res, tms, 128)); return 0;
  };
  const char* names[] = {"addr", "rank", "box", "gdim", "gstride", "estride", "elemtype", "interleave", "swizzle", "atomicity", "fill"};
  std::vector<std::vector<Op>> cands = {
    {{0, 0, (unsigned long long)g}},
    {{1, 0, 3}}, {{1, 0, 2}},
    {{2, 0, 64}}, {{2, 0, 63}}, {{2, 1, 1}}, {{2, 1, 0}}, {{2, 2, 64}}, {{2, 2, 63}},
    {{3, 0, D}}, {{3, 0, D - 1}}, {{3, 1, H}}, {{3, 1, H - 1}}, {{3, 2, T}}, {{3, 2, T - 1}},
    {{4, 0, D * 2}}, {{4, 0, D * 2 / 16}}, {{4, 1, H * D * 2}}, {{4, 1, H * D * 2 / 16}},
    {{4, 0, H * D * 2}}, {{4, 1, D * 2}},
    {{5, 0, 1}}, {{5, 0, 0}}, {{5, 1, 1}}, {{5, 2, 1}},
    {{6, 0, 9}}, {{6, 0, 10}}, {{7, 0, 0}}, {{8, 0, 3}}, {{10, 0, 0}}};
  std::vector<Op> fromZero;
  for (auto& c : cands) {
    unsigned char res[128]; if (run(c, false, res)) return 1;
    int diff = 0; for (int i = 0; i < 128; ++i) diff += res[i] != refb[i];
    printf("field %-10s ord %d value %llu: %s (%d bytes differ)\n", names[c[0].op], c[0].ord, c[0].v, diff ? "changes the map" : "SAME", diff);
    if (!diff) {
      bool have = false; for (auto& f : fromZero) have |= (f.op == c[0].op && f.ord == c[0].ord);
      if (!have) fromZero.push_back(c[0]);
    }
  }
  unsigned char built[128]; if (run(fromZero, true, built)) return 1;
  int diff = 0; for (int i = 0; i < 128; ++i) diff += built[i] != refb[i];
  printf("built from zeros with %zu replaces: %d bytes differ from the driver's map\n", fromZero.size(), diff);
  printf("built:"); for (int i = 0; i < 128; ++i) printf("%s%02x", i % 16 ? "" : "\n  ", built[i]); printf("\n");
  // Loads with the driver's map and with the built one, against the expected swizzled tile.
  int bad[2] = {0, 0};
  for (int which = 0; which < 2; ++which) {
    CK(cuMemcpyHtoD(tms, which ? built : refb, 128));
    for (int c0 : {0, 64}) for (int h = 0; h < H; ++h) for (int t0 : {0, 150}) {
      load<<<1, 128>>>((const void*)tms, (unsigned char*)out, c0, h, t0);
      CUresult r = cuCtxSynchronize(); if (r != CUDA_SUCCESS) { const char* s; cuGetErrorString(r, &s); printf("load %d FAILED: %s\n", which, s); return 1; }
      std::vector<unsigned short> tile(4096); CK(cuMemcpyDtoH(tile.data(), out, 8192));
      for (int r = 0; r < 64; ++r) for (int j = 0; j < 8; ++j) for (int e = 0; e < 8; ++e) {
        int t = t0 + r, d = c0 + 8 * j + e;
        unsigned short want = (t < T && d < D) ? host[((size_t)t * H + h) * D + d] : 0;
        unsigned short got = tile[r * 64 + ((j ^ (r & 7)) * 8) + e];
        bad[which] += got != want;
      }
    }
  }
  printf("RESULT loads: driver map %d wrong elements, built map %d wrong elements (of %d)\n", bad[0], bad[1], 2 * 3 * 2 * 4096);
  return 0;
}
