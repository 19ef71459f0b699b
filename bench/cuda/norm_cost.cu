// What normalization costs the Hopper kernels, build against build: loads several builds of the
// Hopper module (cubins of lightning_sm90.cu, each made with other -D flags) into one process,
// checks each build's kernels against a float64 recurrence, then times plain, normalized identity,
// elu1 and normalized elu1 on every build, the builds interleaved round by round, their order rotated
// by one each round (so drift of the card and a build's place in the round hit all alike), and
// prints the medians.
//
// Build (repository root; the harness itself is host code plus a fill kernel):
//   nvcc -O2 -arch=sm_90 -I gpu-worker/src/main/cuda bench/cuda/norm_cost.cu -o norm_cost
//   nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I gpu-worker/src/main/cuda [-DFLAGS] \
//        gpu-worker/src/main/cuda/lightning_sm90.cu -o NAME.cubin
// Run: ./norm_cost [--rounds R] [--t T] [--rotate-variants] [--per-round] [--probe] [--repeat N] NAME=FILE.cubin ...   (exit status 1 when a checked build fails)
//   A NAME containing "portable" is a build of the portable module (lightning.cu, its mma.sync
//   kernels; a cubin for sm_90), timed as the backend runs it at that shape: one segment, forward only.
//   A NAME starting with "x-" is a measurement build (a part of the work left out, so its results
//   are wrong on purpose): timed, its check printed but not held against it.
//
// Timed as the backend runs T = 1M, H = 64 on an H200 (SegmentPlan: 64 CTAs a segment, 132 resident
// -> 2 segments, pass 1 over the first half in 2 sub-segments): the states kernel over T / 2 tokens
// (grid 64 x 1 x 2) and then the forward kernel over T (grid 64 x 1 x 2, incoming states given), one
// pair of events around both (the scan between them is not timed: a few microseconds). --probe: the SM clock
// measured before the states kernel, between the kernels and after the forward (clock_probe), outside the
// timed intervals; the total is then the states kernel's time plus the forward's. --repeat N: each build's variant
// is launched N times back to back and only the last pair timed, so that it runs after itself (as DeviceBench's
// repeated runs do) rather than after another variant: at the card's power limit the clock a launch gets depends
// on what ran before it (hopnorm3's round 1, 10 builds: normalized identity, always measured right after plain,
// started its forward at 1538 to 1740 MHz, plain, after normalized elu1, at 1726 to 1865).
// bf16, Dk = Dv = 128, MiniMax slopes, inputs uniform in [-1, 1) made on the device.
#include "build_check.cuh"

// --probe: the SM clock at a moment, as one thread's clock64 cycles over at least 20 us of the global timer
// (ns); written to out[2 slot], out[2 slot + 1]. Launched before the states kernel, between the two kernels and
// after the forward, outside the timed intervals: the clock each kernel started and ended with.
__global__ void clock_probe(unsigned long long* out, int slot) {
    unsigned long long t0, t1;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    const long long c0 = clock64();
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
    } while (t1 - t0 < 20000ull);
    const long long c1 = clock64();
    out[2 * slot] = (unsigned long long)(c1 - c0);
    out[2 * slot + 1] = t1 - t0;
}

int main(int argc, char** argv) {
    int rounds = 10, repeat = 1;
    bool rotateVariants = false, perRound = false, probe = false;
    long long T = 1048576;
    std::vector<std::pair<std::string, std::string>> specs;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--rotate-variants")) rotateVariants = true;
        else if (!std::strcmp(argv[i], "--per-round")) perRound = true;
        else if (!std::strcmp(argv[i], "--probe")) probe = true;
        else if (!std::strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = std::max(1, std::atoi(argv[++i]));
        else if (!std::strcmp(argv[i], "--t") && i + 1 < argc) T = std::atoll(argv[++i]);
        else if (!add_build_spec(argv[i], specs)) return 2;
    }
    CK(cudaSetDevice(0));
    CK(cudaFree(0));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    std::printf("norm_cost on %s, %d SMs, T = %lld, H = 64, D = 128, bf16, %d rounds\n", prop.name,
                prop.multiProcessorCount, T, rounds);
    const std::vector<Build> builds = load_builds(specs);
    // ---- checks ----
    const std::vector<bool> buildOk = check_builds(builds);
    const bool allOk = std::find(buildOk.begin(), buildOk.end(), false) == buildOk.end();
    // ---- timing ----
    const int H = 64, D = 128, S = 2;
    const size_t elems = (size_t)T * H * D;
    __nv_bfloat16 *q, *k, *v, *o;
    float *sl, *inc, *incZ, *loc, *locZ, *stOut, *stZ;
    CK(cudaMalloc(&q, 2 * elems)); CK(cudaMalloc(&k, 2 * elems)); CK(cudaMalloc(&v, 2 * elems)); CK(cudaMalloc(&o, 2 * elems));
    const size_t stE = (size_t)S * H * D * D, zE = (size_t)S * H * D;
    CK(cudaMalloc(&sl, 4 * H));
    CK(cudaMalloc(&inc, 4 * stE)); CK(cudaMalloc(&incZ, 4 * zE)); CK(cudaMalloc(&loc, 4 * stE)); CK(cudaMalloc(&locZ, 4 * zE));
    CK(cudaMalloc(&stOut, 4 * stE)); CK(cudaMalloc(&stZ, 4 * zE));
    fill_bf16<<<1024, 256>>>(q, elems, 1, -1.f, 2.f);
    fill_bf16<<<1024, 256>>>(k, elems, 2, -1.f, 2.f);
    fill_bf16<<<1024, 256>>>(v, elems, 3, -1.f, 2.f);
    fill_f32<<<1024, 256>>>(inc, stE, 4, -0.1f, 0.2f);
    fill_f32<<<1024, 256>>>(incZ, zE, 5, 0.f, 1.f);
    std::vector<float> slopes(H);
    for (int h = 0; h < H; ++h) slopes[h] = (float)std::pow(2.0, -8.0 * (h + 1) / H);
    CK(cudaMemcpy(sl, slopes.data(), 4 * H, cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize());
    const char* cfgName[4] = {"plain", "normalized-identity", "elu1", "normalized-elu1"};
    const int cfgFm[4] = {0, 0, 1, 1};
    const bool cfgNorm[4] = {false, true, false, true};
    cudaEvent_t e0, e1, e2, e1a;
    CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1)); CK(cudaEventCreate(&e2)); CK(cudaEventCreate(&e1a));
    unsigned long long* probeDev;
    CK(cudaMalloc(&probeDev, 6 * sizeof(unsigned long long)));
    // --probe: the median SM clock (MHz) at the three probes, per build and variant
    std::vector<std::vector<std::vector<float>>> mhz(builds.size(), std::vector<std::vector<float>>(12));
    // times[build][cfg][round]: total, forward
    std::vector<std::vector<std::vector<float>>> tot(builds.size(), std::vector<std::vector<float>>(4)),
        fw(builds.size(), std::vector<std::vector<float>>(4));
    // The builds' order rotates by one each round, so that a position in the round (the first portable
    // build after the Hopper ones ran its plain case 10% slower in one run) falls on every build alike.
    // --rotate-variants: a build's four variants also rotate by one each round (otherwise plain always
    // runs first and normalized identity right after it). --per-round: every time printed ("ROUND" lines).
    for (int r = -1; r < rounds; ++r) {  // round -1: warm-up
        for (size_t j = 0; j < builds.size(); ++j) {
            const size_t bi = (j + (size_t)(r + 1)) % builds.size();
            const Build& b = builds[bi];
            for (int cc = 0; cc < 4; ++cc) {
                const int c = rotateVariants ? (cc + r + 1) % 4 : cc;
                LightningArgs a;
                std::memset(&a, 0, sizeof a);
                a.k = k; a.v = v; a.slopes = sl; a.heads = a.headsQ = a.headsK = a.headsV = H; a.dk = D; a.dv = D;
                a.featureMap = cfgFm[c]; a.normalize = cfgNorm[c]; a.eps = 1e-5f;
                LightningArgs p1 = a;  // pass 1: local states of the first half, 2 sub-segments
                p1.n = (int)(T / 2); p1.segTokens = (int)(T / 4); p1.scale = 1.f;
                p1.states = loc; p1.statesNorm = cfgNorm[c] ? locZ : nullptr;
                LightningArgs p2 = a;  // pass 2: the whole window, 2 segments
                p2.q = q; p2.o = o; p2.n = (int)T; p2.segTokens = (int)(T / 2); p2.scale = 1.f;
                p2.incoming = inc; p2.incomingNorm = cfgNorm[c] ? incZ : nullptr;
                p2.states = stOut; p2.statesNorm = cfgNorm[c] ? stZ : nullptr;
                // The portable kernels: 2 column tiles a head, so the heads alone fill the GPU and the
                // backend runs one segment, no pass 1 (SegmentPlan).
                if (b.portable) {
                    p2.segTokens = (int)T;
                }
                const int ct = (D + b.cols - 1) / b.cols;
                for (int rep = 0; rep < repeat; ++rep) {  // --repeat: only the last launch pair counts
                if (probe) clock_probe<<<1, 1>>>(probeDev, 0);
                CK(cudaEventRecord(e0));
                if (!b.portable) launch(cfgNorm[c] ? b.stN : b.st, dim3(H, ct, 2), b.threads, b.smemS, p1);
                CK(cudaEventRecord(e1a));
                if (probe) clock_probe<<<1, 1>>>(probeDev, 1);
                CK(cudaEventRecord(e1));
                launch(cfgNorm[c] ? b.fwdN : b.fwd, dim3(H, ct, b.portable ? 1 : S), b.threads, b.smemF, p2);
                CK(cudaEventRecord(e2));
                if (probe) clock_probe<<<1, 1>>>(probeDev, 2);
                CK(cudaDeviceSynchronize());
                CK(cudaGetLastError());
                float msS, msF;
                CK(cudaEventElapsedTime(&msS, e0, e1a));
                CK(cudaEventElapsedTime(&msF, e1, e2));
                const float msT = msS + msF;  // (the probe between the kernels not counted)
                float mh[3] = {0.f, 0.f, 0.f};
                if (probe) {
                    unsigned long long pr[6];
                    CK(cudaMemcpy(pr, probeDev, sizeof pr, cudaMemcpyDeviceToHost));
                    for (int x = 0; x < 3; ++x) mh[x] = 1000.f * (float)pr[2 * x] / (float)pr[2 * x + 1];
                }
                if (rep + 1 < repeat) continue;
                if (r >= 0) {
                    tot[bi][c].push_back(msT);
                    fw[bi][c].push_back(msF);
                    for (int x = 0; x < 3; ++x) mhz[bi][3 * c + x].push_back(mh[x]);
                }
                if (r >= 0 && perRound) {
                    if (probe)
                        std::printf("ROUND %d %s %s %.3f %.3f MHz %.0f %.0f %.0f\n", r, b.name.c_str(), cfgName[c], msT, msF,
                                    mh[0], mh[1], mh[2]);
                    else
                        std::printf("ROUND %d %s %s %.3f %.3f\n", r, b.name.c_str(), cfgName[c], msT, msF);
                }
                }  // rep
            }
        }
    }
    auto median = [](std::vector<float> x) { std::sort(x.begin(), x.end()); return x[x.size() / 2]; };
    auto spread = [](std::vector<float> x) { std::sort(x.begin(), x.end()); return x.back() - x.front(); };
    std::printf("%-16s %-20s %10s %8s %10s %9s\n", "build", "variant", "ms", "spread", "forward", "over plain");
    for (size_t bi = 0; bi < builds.size(); ++bi) {
        const float plain = median(tot[bi][0]);
        for (int c = 0; c < 4; ++c) {
            const float m = median(tot[bi][c]);
            std::printf("RESULT time %-16s %-20s %8.3f ms %6.3f %8.3f ms %+8.1f%%", builds[bi].name.c_str(), cfgName[c], m,
                        spread(tot[bi][c]), median(fw[bi][c]), 100.0 * (m / plain - 1));
            if (probe)
                std::printf("  MHz %4.0f %4.0f %4.0f", median(mhz[bi][3 * c]), median(mhz[bi][3 * c + 1]),
                            median(mhz[bi][3 * c + 2]));
            std::printf("\n");
        }
    }
    std::printf("RESULT checks %s\n", allOk ? "ok" : "FAILED");
    return allOk ? 0 : 1;
}
