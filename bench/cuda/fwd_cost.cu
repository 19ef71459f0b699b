// The forward kernel's cost, build against build (issue 13, helper kfwd): loads several builds of the Hopper
// module (cubins of lightning_sm90.cu, each made with other -D flags, bench/kfwd-build.sh) into one process,
// checks each build's kernels against a float64 recurrence (plain, elu1, normalized: every body of the
// forward entry), then times the plain bf16 forward kernel and the states kernel alone at T = 1M, D = 128,
// H = 64 (2 segments: 128 CTAs, as the backend's plan) and H = 8 (16 segments: 128 CTAs), the builds
// interleaved round by round, their order rotated by one each round (the H200 is power-capped and its clock
// drifts: a build's place in the round falls on every build alike), and prints medians with the spread
// (max - min) and the forward's share of the copy bandwidth measured in the same process (cudaMemcpy
// device to device, bytes read + written).
//
// Build (repository root):
//   nvcc -O2 -arch=sm_90 -I gpu-worker/src/main/cuda bench/cuda/fwd_cost.cu -o fwd_cost
// Run: ./fwd_cost [--rounds R] [--t T] NAME=FILE.cubin ...   (exit status 1 when a build fails its checks;
//   a failed build is not timed)
#include "build_check.cuh"

int main(int argc, char** argv) {
    int rounds = 10;
    long long T = 1048576;
    std::vector<std::pair<std::string, std::string>> specs;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--t") && i + 1 < argc) T = std::atoll(argv[++i]);
        else if (!add_build_spec(argv[i], specs)) return 2;
    }
    CK(cudaSetDevice(0));
    CK(cudaFree(0));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    std::printf("fwd_cost on %s, %d SMs, T = %lld, D = 128, bf16, %d rounds\n", prop.name,
                prop.multiProcessorCount, T, rounds);
    const std::vector<Build> builds = load_builds(specs);
    // ---- checks ----
    const std::vector<bool> buildOk = check_builds(builds);
    const bool allOk = std::find(buildOk.begin(), buildOk.end(), false) == buildOk.end();
    // ---- timing ----
    // copy bandwidth: a 2 GiB device-to-device copy, best of 5 (bytes read + written)
    double copyTBs = 0;
    {
        const size_t cb = (size_t)2 << 30;
        void *x, *y;
        CK(cudaMalloc(&x, cb)); CK(cudaMalloc(&y, cb));
        CK(cudaMemset(x, 1, cb));
        cudaEvent_t c0, c1;
        CK(cudaEventCreate(&c0)); CK(cudaEventCreate(&c1));
        for (int r = 0; r < 6; ++r) {
            CK(cudaEventRecord(c0));
            CK(cudaMemcpy(y, x, cb, cudaMemcpyDeviceToDevice));
            CK(cudaEventRecord(c1));
            CK(cudaEventSynchronize(c1));
            float ms;
            CK(cudaEventElapsedTime(&ms, c0, c1));
            if (r > 0) copyTBs = std::max(copyTBs, 2.0 * cb / (ms * 1e-3) / 1e12);
        }
        CK(cudaFree(x)); CK(cudaFree(y));
        std::printf("copy bandwidth %.3f TB/s (read + written)\n", copyTBs);
    }
    const int D = 128;
    const int shapesH[2] = {64, 8}, shapesS[2] = {2, 16};
    const size_t elems = (size_t)T * 64 * D;  // the largest H
    __nv_bfloat16 *q, *k, *v, *o;
    float *sl, *inc, *stOut, *loc;
    CK(cudaMalloc(&q, 2 * elems)); CK(cudaMalloc(&k, 2 * elems)); CK(cudaMalloc(&v, 2 * elems)); CK(cudaMalloc(&o, 2 * elems));
    const size_t stE = (size_t)16 * 64 * D * D;  // enough for both shapes' S x H
    CK(cudaMalloc(&sl, 4 * 64));
    CK(cudaMalloc(&inc, 4 * stE)); CK(cudaMalloc(&stOut, 4 * stE)); CK(cudaMalloc(&loc, 4 * stE));
    fill_bf16<<<1024, 256>>>(q, elems, 1, -1.f, 2.f);
    fill_bf16<<<1024, 256>>>(k, elems, 2, -1.f, 2.f);
    fill_bf16<<<1024, 256>>>(v, elems, 3, -1.f, 2.f);
    fill_f32<<<1024, 256>>>(inc, stE, 4, -0.1f, 0.2f);
    cudaEvent_t e0, e1, e2;
    CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1)); CK(cudaEventCreate(&e2));
    std::vector<size_t> live;  // builds that passed (or are measurement builds)
    for (size_t bi = 0; bi < builds.size(); ++bi)
        if (buildOk[bi] || builds[bi].measurementOnly) live.push_back(bi);
    for (int si = 0; si < 2; ++si) {
        const int H = shapesH[si], S = shapesS[si];
        std::vector<float> slopes(H);
        for (int h = 0; h < H; ++h) slopes[h] = (float)std::pow(2.0, -8.0 * (h + 1) / H);
        CK(cudaMemcpy(sl, slopes.data(), 4 * H, cudaMemcpyHostToDevice));
        CK(cudaDeviceSynchronize());
        std::vector<std::vector<float>> fw(builds.size()), stt(builds.size());
        for (int r = -1; r < rounds; ++r) {  // round -1: warm-up
            for (size_t jj = 0; jj < live.size(); ++jj) {
                const size_t bi = live[(jj + (size_t)(r + 1)) % live.size()];
                const Build& b = builds[bi];
                LightningArgs a;
                std::memset(&a, 0, sizeof a);
                a.k = k; a.v = v; a.slopes = sl; a.heads = a.headsQ = a.headsK = a.headsV = H; a.dk = D; a.dv = D;
                a.n = (int)T; a.segTokens = (int)(T / S); a.eps = 1e-5f;
                LightningArgs p1 = a;  // states kernel: the segments' local states
                p1.scale = 1.f; p1.states = loc;
                LightningArgs p2 = a;  // forward: every segment from a given incoming state
                p2.q = q; p2.o = o; p2.scale = 1.f; p2.incoming = inc; p2.states = stOut;
                CK(cudaEventRecord(e0));
                launch(b.st, dim3(H, 1, S), b.threads, b.smemS, p1);
                CK(cudaEventRecord(e1));
                launch(b.fwd, dim3(H, 1, S), b.threads, b.smemF, p2);
                CK(cudaEventRecord(e2));
                CK(cudaEventSynchronize(e2));
                CK(cudaGetLastError());
                float msS, msF;
                CK(cudaEventElapsedTime(&msS, e0, e1));
                CK(cudaEventElapsedTime(&msF, e1, e2));
                if (r >= 0) { stt[bi].push_back(msS); fw[bi].push_back(msF); }
            }
        }
        auto median = [](std::vector<float> x) { std::sort(x.begin(), x.end()); return x[x.size() / 2]; };
        auto spread = [](std::vector<float> x) { std::sort(x.begin(), x.end()); return x.back() - x.front(); };
        const double fwdBytes = 4.0 * 2.0 * (double)T * H * D;  // q, k, v read, o written
        const float base = median(fw[live[0]]);
        std::printf("T = %lld, H = %d, D = %d, bf16, %d segments (%d CTAs), %d rounds; forward share = (q, k, v + o bytes) / time / copy bandwidth\n",
                    T, H, D, S, H * S, rounds);
        for (size_t bi : live) {
            const float mf = median(fw[bi]), ms = median(stt[bi]);
            std::printf("RESULT time H=%-3d %-16s forward %8.3f ms (spread %6.3f, %5.3f of copy, %+6.1f%% vs %s)   states %8.3f ms (spread %6.3f)\n",
                        H, builds[bi].name.c_str(), mf, spread(fw[bi]), fwdBytes / (mf * 1e-3) / 1e12 / copyTBs,
                        100.0 * (mf / base - 1), builds[live[0]].name.c_str(), ms, spread(stt[bi]));
        }
    }
    std::printf("RESULT checks %s\n", allOk ? "ok" : "FAILED");
    return allOk ? 0 : 1;
}
