// The wgmma wrappers (sm_90a) shared by the Hopper kernels: lightning's (hopper.cuh) and softmax
// attention's (softmax_sm90.cu). Descriptor conventions, measured on an H200, are in hopper.cuh's
// layout notes: 128-byte swizzle, atoms of 64 columns whose rows are 128 bytes apart.
#pragma once

namespace lightning_wg {

// ------------------------------ wgmma wrappers --------------------------------------------
// Shared-memory matrix descriptor, 128-byte swizzle: start address, leading and stride byte
// offsets (see the layout notes above).
__device__ __forceinline__ unsigned long long wg_desc(unsigned addr, unsigned lead, unsigned stride) {
    return (unsigned long long)((addr & 0x3FFFFu) >> 4) | ((unsigned long long)(lead >> 4) << 16) |
           ((unsigned long long)(stride >> 4) << 32) | (1ull << 62);
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// Ties registers to this point in program order: reads after it see what the wgmma wrote, and
// the compiler keeps A fragments alive (unmodified) until here.
template <int N>
__device__ __forceinline__ void reg_fence(float* r) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void reg_fence(unsigned* r) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}
// Writes by ordinary stores (and cp.async) become visible to the tensor cores' reads.
__device__ __forceinline__ void fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// D[64 x N] += A[64 x 16] B[16 x N] (N = 64 here): ss takes A from shared memory, rs from
// registers (the mma.sync A fragment layout, per warp its 16 rows). TRANS_B = 1: B's K dimension
// runs down the tile's columns (see the layout notes above). ss0 (rs0): D = A B, D only written.
template <typename T, int N> struct Wgmma;
// The 32 accumulator registers of an m64n64 product, as operands and as their PTX list.
#define LIGHTNING_WG_D32                                                                                   \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),        \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define LIGHTNING_WG_D32_OUT                                                                               \
    "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3]), "=f"(d[4]), "=f"(d[5]), "=f"(d[6]), "=f"(d[7]),        \
        "=f"(d[8]), "=f"(d[9]), "=f"(d[10]), "=f"(d[11]), "=f"(d[12]), "=f"(d[13]), "=f"(d[14]),           \
        "=f"(d[15]), "=f"(d[16]), "=f"(d[17]), "=f"(d[18]), "=f"(d[19]), "=f"(d[20]), "=f"(d[21]),         \
        "=f"(d[22]), "=f"(d[23]), "=f"(d[24]), "=f"(d[25]), "=f"(d[26]), "=f"(d[27]), "=f"(d[28]),         \
        "=f"(d[29]), "=f"(d[30]), "=f"(d[31])
#define LIGHTNING_WG_D32_LIST                                                                              \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                                             \
    "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"
// One specialization per element type; TYPE_NAME is its PTX name.
#define LIGHTNING_WG_WGMMA64(TYPE, TYPE_NAME)                                                              \
    template <> struct Wgmma<TYPE, 64> {                                                                   \
        template <int TRANS_B>                                                                             \
        static __device__ __forceinline__ void ss(float* d, unsigned long long a, unsigned long long b) {   \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE_NAME "." TYPE_NAME " "           \
                         LIGHTNING_WG_D32_LIST ", %32, %33, p, 1, 1, 0, %34;\n}\n"                          \
                         : LIGHTNING_WG_D32                                                                \
                         : "l"(a), "l"(b), "n"(TRANS_B)                                                    \
                         : "memory");                                                                     \
        }                                                                                                  \
        template <int TRANS_B>                                                                             \
        static __device__ __forceinline__ void rs(float* d, const unsigned* a, unsigned long long b) {      \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE_NAME "." TYPE_NAME " "           \
                         LIGHTNING_WG_D32_LIST ", {%32,%33,%34,%35}, %36, p, 1, 1, %37;\n}\n"               \
                         : LIGHTNING_WG_D32                                                                \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TRANS_B)               \
                         : "memory");                                                                     \
        }                                                                                                  \
        /* D = A B: D is only written, so its registers need no zeros first */                            \
        template <int TRANS_B>                                                                             \
        static __device__ __forceinline__ void ss0(float* d, unsigned long long a, unsigned long long b) {  \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE_NAME "." TYPE_NAME " "           \
                         LIGHTNING_WG_D32_LIST ", %32, %33, p, 1, 1, 0, %34;\n}\n"                          \
                         : LIGHTNING_WG_D32_OUT                                                            \
                         : "l"(a), "l"(b), "n"(TRANS_B)                                                    \
                         : "memory");                                                                     \
        }                                                                                                  \
        template <int TRANS_B>                                                                             \
        static __device__ __forceinline__ void rs0(float* d, const unsigned* a, unsigned long long b) {     \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE_NAME "." TYPE_NAME " "           \
                         LIGHTNING_WG_D32_LIST ", {%32,%33,%34,%35}, %36, p, 1, 1, %37;\n}\n"               \
                         : LIGHTNING_WG_D32_OUT                                                            \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TRANS_B)               \
                         : "memory");                                                                     \
        }                                                                                                  \
    };
LIGHTNING_WG_WGMMA64(__nv_bfloat16, "bf16")
LIGHTNING_WG_WGMMA64(__half, "f16")

// D[64 x 128] += A[64 x 16] B[16 x 128], B from shared memory (TRANS_B as above), A from shared memory
// (ss) or registers (rs); ss0, rs0: D = A B.
#define LIGHTNING_WG_D64                                                                                   \
    LIGHTNING_WG_D32, "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]),         \
        "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]),          \
        "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]),          \
        "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]),          \
        "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define LIGHTNING_WG_D64_OUT                                                                               \
    "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3]), "=f"(d[4]), "=f"(d[5]), "=f"(d[6]), "=f"(d[7]),        \
        "=f"(d[8]), "=f"(d[9]), "=f"(d[10]), "=f"(d[11]), "=f"(d[12]), "=f"(d[13]), "=f"(d[14]),           \
        "=f"(d[15]), "=f"(d[16]), "=f"(d[17]), "=f"(d[18]), "=f"(d[19]), "=f"(d[20]), "=f"(d[21]),         \
        "=f"(d[22]), "=f"(d[23]), "=f"(d[24]), "=f"(d[25]), "=f"(d[26]), "=f"(d[27]), "=f"(d[28]),         \
        "=f"(d[29]), "=f"(d[30]), "=f"(d[31]), "=f"(d[32]), "=f"(d[33]), "=f"(d[34]), "=f"(d[35]),         \
        "=f"(d[36]), "=f"(d[37]), "=f"(d[38]), "=f"(d[39]), "=f"(d[40]), "=f"(d[41]), "=f"(d[42]),         \
        "=f"(d[43]), "=f"(d[44]), "=f"(d[45]), "=f"(d[46]), "=f"(d[47]), "=f"(d[48]), "=f"(d[49]),         \
        "=f"(d[50]), "=f"(d[51]), "=f"(d[52]), "=f"(d[53]), "=f"(d[54]), "=f"(d[55]), "=f"(d[56]),         \
        "=f"(d[57]), "=f"(d[58]), "=f"(d[59]), "=f"(d[60]), "=f"(d[61]), "=f"(d[62]), "=f"(d[63])
#define LIGHTNING_WG_D64_LIST                                                                              \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                                             \
    "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"                                     \
    "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"                                     \
    "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
#define LIGHTNING_WG_WGMMA128(TYPE, TYPE_NAME)                                                             \
    template <> struct Wgmma<TYPE, 128> {                                                                  \
        /* both operands from shared memory (descriptors), as Wgmma<T, 64>::ss */                        \
        template <int TRANS_B>                                                                             \
        static __device__ __forceinline__ void ss(float* d, unsigned long long a, unsigned long long b) {   \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE_NAME "." TYPE_NAME " "          \
                         LIGHTNING_WG_D64_LIST ", %64, %65, p, 1, 1, 0, %66;\n}\n"                          \
                         : LIGHTNING_WG_D64                                                                \
                         : "l"(a), "l"(b), "n"(TRANS_B)                                                    \
                         : "memory");                                                                     \
        }                                                                                                  \
        template <int TRANS_B>                                                                             \
        static __device__ __forceinline__ void ss0(float* d, unsigned long long a, unsigned long long b) {  \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE_NAME "." TYPE_NAME " "          \
                         LIGHTNING_WG_D64_LIST ", %64, %65, p, 1, 1, 0, %66;\n}\n"                          \
                         : LIGHTNING_WG_D64_OUT                                                            \
                         : "l"(a), "l"(b), "n"(TRANS_B)                                                    \
                         : "memory");                                                                     \
        }                                                                                                  \
        template <int TRANS_B>                                                                             \
        static __device__ __forceinline__ void rs(float* d, const unsigned* a, unsigned long long b) {      \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE_NAME "." TYPE_NAME " "          \
                         LIGHTNING_WG_D64_LIST ", {%64,%65,%66,%67}, %68, p, 1, 1, %69;\n}\n"             \
                         : LIGHTNING_WG_D64                                                                \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TRANS_B)               \
                         : "memory");                                                                     \
        }                                                                                                  \
        template <int TRANS_B>                                                                             \
        static __device__ __forceinline__ void rs0(float* d, const unsigned* a, unsigned long long b) {     \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE_NAME "." TYPE_NAME " "          \
                         LIGHTNING_WG_D64_LIST ", {%64,%65,%66,%67}, %68, p, 1, 1, %69;\n}\n"             \
                         : LIGHTNING_WG_D64_OUT                                                            \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TRANS_B)               \
                         : "memory");                                                                     \
        }                                                                                                  \
    };
LIGHTNING_WG_WGMMA128(__nv_bfloat16, "bf16")
LIGHTNING_WG_WGMMA128(__half, "f16")

// D[64 x 8] (+)= A[64 x 16] B[16 x 8], both from shared memory, B K-major: ss, the denominators'
// q_i . zP (the normalizer tile as B; ACC = 0: D = A B); ss_ta, A MN-major, the loaders' column sums
// of the normalizer (the K tile read as K^T).
#define LIGHTNING_WG_WGMMA8(TYPE, TYPE_NAME)                                                               \
    template <> struct Wgmma<TYPE, 8> {                                                                    \
        template <int ACC>                                                                                 \
        static __device__ __forceinline__ void ss(float* d, unsigned long long a, unsigned long long b) {   \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"                                       \
                         "wgmma.mma_async.sync.aligned.m64n8k16.f32." TYPE_NAME "." TYPE_NAME " "            \
                         "{%0,%1,%2,%3}, %4, %5, p, 1, 1, 0, 0;\n}\n"                                       \
                         : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                  \
                         : "l"(a), "l"(b), "n"(ACC)                                                        \
                         : "memory");                                                                     \
        }                                                                                                  \
        /* D += A B with A MN-major (its M dimension contiguous: a K tile read as K^T); ss_ta0: D = A B */ \
        static __device__ __forceinline__ void ss_ta(float* d, unsigned long long a, unsigned long long b) { \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n8k16.f32." TYPE_NAME "." TYPE_NAME " "            \
                         "{%0,%1,%2,%3}, %4, %5, p, 1, 1, 1, 0;\n}\n"                                       \
                         : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                  \
                         : "l"(a), "l"(b)                                                                  \
                         : "memory");                                                                     \
        }                                                                                                  \
        static __device__ __forceinline__ void ss_ta0(float* d, unsigned long long a, unsigned long long b) { \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 0, 0;\n"                                        \
                         "wgmma.mma_async.sync.aligned.m64n8k16.f32." TYPE_NAME "." TYPE_NAME " "            \
                         "{%0,%1,%2,%3}, %4, %5, p, 1, 1, 1, 0;\n}\n"                                       \
                         : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                                  \
                         : "l"(a), "l"(b)                                                                  \
                         : "memory");                                                                     \
        }                                                                                                  \
    };
LIGHTNING_WG_WGMMA8(__nv_bfloat16, "bf16")
LIGHTNING_WG_WGMMA8(__half, "f16")

}  // namespace lightning_wg
