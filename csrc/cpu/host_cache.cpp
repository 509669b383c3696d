// A small caching allocator for the large output tensors of the CPU ops.
//
// glibc serves allocations above its mmap threshold (at most 32 MB) with a
// fresh mmap and returns them with munmap on free, so every large output of
// a training step is page-faulted and zeroed by the kernel again, which on a
// 2-core machine costs more than the neuron kernel itself (64 MB: ~20 ms of
// faults vs ~5 ms of work). Blocks here are 2 MB aligned, advised as huge
// pages, and kept on a free list keyed by size for the next step, up to a
// cap (SNN_CUDA_CPU_CACHE_MB, default 1024; 0 disables the cache).
#include <ATen/ATen.h>
#include <torch/library.h>
#include <c10/core/CPUAllocator.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "../host.h"

namespace snn_host {
namespace {

constexpr size_t kMinCached = size_t(1) << 20;  // smaller blocks: glibc's heap serves them well
constexpr size_t kAlign = size_t(2) << 20;      // huge page

class BlockCache {
 public:
  BlockCache() {
    const char* env = std::getenv("SNN_CUDA_CPU_CACHE_MB");
    long mb = env ? std::atol(env) : 1024;
    cap_ = mb > 0 ? size_t(mb) << 20 : 0;
  }

  void* get(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(kAlign, bytes);
    TORCH_CHECK(p != nullptr, "snn_cuda: out of memory allocating ", bytes, " bytes on the CPU");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
  }

  void put(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + bytes <= cap_) {
        free_[bytes].push_back(p);
        cached_ += bytes;
        return;
      }
    }
    std::free(p);
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& kv : free_)
      for (void* p : kv.second) std::free(p);
    free_.clear();
    cached_ = 0;
  }

  size_t cached() {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }

  bool enabled() const { return cap_ > 0; }

 private:
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
  size_t cap_ = 0;
};

// Never destroyed: tensors may be freed after static destructors have run.
BlockCache& cache() {
  static BlockCache* c = new BlockCache();
  return *c;
}

struct BlockCtx {
  void* ptr;
  size_t bytes;
};

void release(void* ctx) {
  auto* b = static_cast<BlockCtx*>(ctx);
  cache().put(b->ptr, b->bytes);
  delete b;
}

// A c10::Allocator over the cache, so the outputs are ordinary resizable
// tensors: a resize_ reallocates through it (small sizes go to torch's
// default CPU allocator).
struct CachingAllocator final : public c10::Allocator {
  at::DataPtr allocate(size_t bytes) override {
    if (!cache().enabled() || bytes < kMinCached) return c10::GetDefaultCPUAllocator()->allocate(bytes);
    const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    auto* ctx = new BlockCtx{cache().get(rounded), rounded};
    return at::DataPtr(ctx->ptr, ctx, &release, at::Device(at::kCPU));
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
};

CachingAllocator& allocator() {
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

}  // namespace

at::Tensor empty_cpu(at::IntArrayRef sizes, at::ScalarType dtype) {
  const auto opts = at::TensorOptions().dtype(dtype).device(at::kCPU);
  int64_t numel = 1;
  for (auto s : sizes) numel *= s;
  const size_t bytes = size_t(numel) * at::elementSize(dtype);
  if (!cache().enabled() || bytes < kMinCached) return at::empty(sizes, opts);
  auto storage = c10::Storage(c10::Storage::use_byte_size_t(), bytes, &allocator(), /*resizable=*/true);
  return at::empty({0}, opts).set_(storage, 0, sizes);
}

namespace {
int64_t cpu_cache_clear() {
  const size_t n = cache().cached();
  cache().clear();
  return (int64_t)n;
}
int64_t cpu_cache_bytes() { return (int64_t)cache().cached(); }
}  // namespace

}  // namespace snn_host

TORCH_LIBRARY_FRAGMENT(snn_cuda, m) {
  // Frees the CPU output blocks cached for reuse; returns the bytes freed.
  m.def("cpu_cache_clear() -> int", &snn_host::cpu_cache_clear);
  m.def("cpu_cache_bytes() -> int", &snn_host::cpu_cache_bytes);
}
