// A recorded allocation trace replayed in C++ through PyTorch's current CUDA allocator
// (c10::cuda::CUDACachingAllocator::raw_alloc_with_stream / raw_delete): the native caching
// allocator, expandable segments, or a pluggable allocator such as vmstitch, whichever the
// process installed. Without Python between the calls, the time per event is the allocator's
// own (plus, for a pluggable allocator, PyTorch's wrapper around it), which is what the
// allocator adds to a launch-bound training step. Loaded with ctypes by worker.py (trace mode,
// --cxx); built on the GPU machine against the installed torch by alloc_overhead.py.
#include <c10/cuda/CUDACachingAllocator.h>

#include <chrono>
#include <cstdint>
#include <vector>

extern "C" {

// ids[i] / sizes[i]: event i allocates sizes[i] bytes as allocation ids[i], or, when sizes[i]
// is negative, frees allocation ids[i] (if it is live). nids: one past the largest id. Writes
// ns per event of each pass into ns_out[passes]; what is live after a pass is freed untimed.
// Returns 0, or -1 when an allocation threw (out of memory, for instance).
int vms_bench_torch_replay(const int32_t *ids, const int64_t *sizes, long n, long nids,
                           int passes, void *stream, double *ns_out) {
    std::vector<void *> live((size_t)nids, nullptr);
    auto s = static_cast<cudaStream_t>(stream);
    try {
        for (int p = 0; p < passes; p++) {
            auto t0 = std::chrono::steady_clock::now();
            for (long i = 0; i < n; i++) {
                void *&slot = live[(size_t)ids[i]];
                if (sizes[i] >= 0) {
                    slot = c10::cuda::CUDACachingAllocator::raw_alloc_with_stream(
                        (size_t)sizes[i], s);
                } else if (slot) {
                    c10::cuda::CUDACachingAllocator::raw_delete(slot);
                    slot = nullptr;
                }
            }
            auto t1 = std::chrono::steady_clock::now();
            ns_out[p] = std::chrono::duration<double, std::nano>(t1 - t0).count() / (double)n;
            for (auto &q : live)
                if (q) {
                    c10::cuda::CUDACachingAllocator::raw_delete(q);
                    q = nullptr;
                }
        }
    } catch (...) {
        for (auto &q : live)
            if (q) c10::cuda::CUDACachingAllocator::raw_delete(q);
        return -1;
    }
    return 0;
}

} // extern "C"
