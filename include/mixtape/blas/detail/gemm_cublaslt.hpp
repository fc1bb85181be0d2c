/// @file gemm_cublaslt.hpp
/// @brief cuBLASLt calls and the process-wide algorithm cache (CUDA builds; host code that needs no
///        nvcc, so it sits outside the backend namespace and is one body per program).
///
/// `lt::run` takes one column-major cuBLASLt problem (gemm_cuda.cuh maps row-major GEMMs onto it:
/// C^T = B^T A^T), builds the matmul descriptor and matrix layouts, finds the algorithm and
/// enqueues `cublasLtMatmul` on the context's stream with the context's workspace. alpha and beta
/// are passed by value (CUBLASLT_POINTER_MODE_HOST).
///
/// Algorithm cache: the key is every input of the heuristic (device ordinal, compute and scale
/// types, the four matrix types, transposes, m, n, k, leading dimensions, batch count and strides,
/// epilogue, bias type, aux ld and batch stride, the alignment of every pointer up to 256 bytes,
/// workspace size, allowed split-k reduction schemes); the value is the heuristic's first algorithm, or "no algorithm". It is asked
/// once per key for the life of the process, under a mutex, and shared by every context and handle
/// on the device: the same problem always runs the same algorithm (run-to-run reproducible bits;
/// a graph captured after a warm-up call replays exactly what eager mode runs, and capture itself
/// never waits on a heuristic query when the key is warm).
#pragma once

#if defined(MIXTAPE_WITH_CUDA)

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"

namespace mixtape::blas {

/// Counters of the cuBLASLt algorithm cache.
struct AlgoCacheStats {
  std::uint64_t hits = 0;     ///< lookups answered from the cache
  std::uint64_t misses = 0;   ///< heuristic queries (one per new key)
  std::uint64_t entries = 0;  ///< keys cached
  /// CUDA GEMMs by path (gemm_cuda.cuh): one fused cublasLtMatmul; a plain one plus a reduction of
  /// an operand for bgrad_a / bgrad_b; a plain one into a buffer plus the epilogue kernel.
  std::uint64_t fused = 0, plain = 0, separate = 0;
};

namespace detail::lt {

using i64 = std::int64_t;

/// One cublasLtMatmul, column-major: D (m x n) = epilogue(alpha op(A) op(B) + beta C), C and D one
/// buffer (in place).
struct Problem {
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cudaDataType_t scale_type = CUDA_R_32F;
  cudaDataType_t a_type = CUDA_R_32F, b_type = CUDA_R_32F, c_type = CUDA_R_32F;
  cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  i64 m = 0, n = 0, k = 0, batch = 1;
  const void* a = nullptr;
  i64 lda = 0, stride_a = 0;
  const void* b = nullptr;
  i64 ldb = 0, stride_b = 0;
  void* c = nullptr;
  i64 ldc = 0, stride_c = 0;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  void* bias = nullptr;  ///< the bias (read) or the bias gradient (written)
  cudaDataType_t bias_type = CUDA_R_32F;
  void* aux = nullptr;
  i64 aux_ld = 0, aux_stride = 0;
  double alpha = 1, beta = 0;
  /// false: only algorithms that reduce split-k partials in the compute type (or do not split k).
  bool reduced_precision_reduction = false;
};

/// Largest power of two (up to 256) dividing the address; 256 for null.
inline i64 alignment(const void* p) noexcept {
  const auto v = reinterpret_cast<std::uintptr_t>(p);
  i64 a = 1;
  while (a < 256 && v % static_cast<std::uintptr_t>(2 * a) == 0) a *= 2;
  return a;
}

using Key = std::array<i64, 30>;
struct KeyHash {
  std::size_t operator()(const Key& key) const noexcept {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the fields
    for (i64 v : key) {
      h ^= static_cast<std::uint64_t>(v);
      h *= 1099511628211ull;
    }
    return static_cast<std::size_t>(h);
  }
};
struct Entry {
  bool supported = false;
  cublasLtMatmulAlgo_t algo{};
};
struct AlgoCache {
  std::mutex mutex;
  std::unordered_map<Key, Entry, KeyHash> map;
  std::atomic<std::uint64_t> hits{0}, misses{0};
  std::atomic<std::uint64_t> fused{0}, plain{0}, separate{0};
};
/// The process's cache; never destroyed, so a GEMM during static destruction still finds it.
inline AlgoCache& algo_cache() {
  static AlgoCache* cache = new AlgoCache();
  return *cache;
}

// RAII owners of cuBLASLt descriptors.
struct MatmulDesc {
  cublasLtMatmulDesc_t h = nullptr;
  MatmulDesc() = default;
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
  ~MatmulDesc() {
    if (h != nullptr) (void)cublasLtMatmulDescDestroy(h);
  }
  template <class V>
  void set(cublasLtMatmulDescAttributes_t attr, const V& value) {
    MIXTAPE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(h, attr, &value, sizeof(V)));
  }
};
struct Layout {
  cublasLtMatrixLayout_t h = nullptr;
  Layout() = default;
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
  ~Layout() {
    if (h != nullptr) (void)cublasLtMatrixLayoutDestroy(h);
  }
  void init(cudaDataType_t type, i64 rows, i64 cols, i64 ld, i64 batch, i64 stride) {
    MIXTAPE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&h, type, static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(cols), ld));
    if (batch > 1) {
      const std::int32_t count = static_cast<std::int32_t>(batch);
      MIXTAPE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(h, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
      MIXTAPE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(h, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
    }
  }
};
struct Preference {
  cublasLtMatmulPreference_t h = nullptr;
  Preference() { MIXTAPE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&h)); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  ~Preference() { (void)cublasLtMatmulPreferenceDestroy(h); }
  template <class V>
  void set(cublasLtMatmulPreferenceAttributes_t attr, const V& value) {
    MIXTAPE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(h, attr, &value, sizeof(V)));
  }
};

/// The reduction schemes `p` allows: all of them, or (16-bit outputs without
/// reduced_precision_reduction) only those that add split-k partials in the compute type.
inline std::uint32_t reduction_mask(const Problem& p) noexcept {
  const bool narrow = p.c_type == CUDA_R_16F || p.c_type == CUDA_R_16BF;
  if (!narrow || p.reduced_precision_reduction) return CUBLASLT_REDUCTION_SCHEME_MASK;
  return CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
}

/// Enqueues `p` on the context's stream. Returns false, having enqueued nothing, when cuBLASLt has
/// no algorithm for it (a combination of types, epilogue and layout it does not implement); throws
/// CudaError on any other failure.
inline bool run(const ExecutionContext& ctx, const Problem& p) {
  cublasLtHandle_t handle = ctx.cublaslt();
  void* workspace = ctx.gemm_workspace();
  const i64 ws_bytes = ctx.gemm_workspace_bytes();
  const bool has_bias = p.bias != nullptr, has_aux = p.aux != nullptr;

  MatmulDesc desc;
  MIXTAPE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc.h, p.compute, p.scale_type));
  desc.set(CUBLASLT_MATMUL_DESC_TRANSA, static_cast<std::int32_t>(p.transa));
  desc.set(CUBLASLT_MATMUL_DESC_TRANSB, static_cast<std::int32_t>(p.transb));
  desc.set(CUBLASLT_MATMUL_DESC_POINTER_MODE, static_cast<std::int32_t>(CUBLASLT_POINTER_MODE_HOST));
  desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<std::uint32_t>(p.epilogue));
  if (has_bias) {
    desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, p.bias);
    desc.set(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, static_cast<std::int32_t>(p.bias_type));
  }
  if (has_aux) {
    desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, p.aux);
    desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, p.aux_ld);
    if (p.batch > 1) desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, p.aux_stride);
  }
  Layout la, lb, lc;
  la.init(p.a_type, p.transa == CUBLAS_OP_N ? p.m : p.k, p.transa == CUBLAS_OP_N ? p.k : p.m, p.lda, p.batch, p.stride_a);
  lb.init(p.b_type, p.transb == CUBLAS_OP_N ? p.k : p.n, p.transb == CUBLAS_OP_N ? p.n : p.k, p.ldb, p.batch, p.stride_b);
  lc.init(p.c_type, p.m, p.n, p.ldc, p.batch, p.stride_c);

  const Key key = {ctx.device().index(), static_cast<i64>(p.compute), static_cast<i64>(p.scale_type),
                   static_cast<i64>(p.a_type), static_cast<i64>(p.b_type), static_cast<i64>(p.c_type),
                   static_cast<i64>(p.transa), static_cast<i64>(p.transb), p.m, p.n, p.k, p.batch, p.lda, p.ldb, p.ldc,
                   p.stride_a, p.stride_b, p.stride_c, static_cast<i64>(p.epilogue),
                   has_bias ? static_cast<i64>(p.bias_type) : -1, has_aux ? p.aux_ld : -1, has_aux ? p.aux_stride : -1,
                   alignment(p.a), alignment(p.b), alignment(p.c), has_bias ? alignment(p.bias) : 0,
                   has_aux ? alignment(p.aux) : 0, ws_bytes, static_cast<i64>(reduction_mask(p)), 0};
  AlgoCache& cache = algo_cache();
  Entry entry;
  bool found = false;
  {
    std::lock_guard lock(cache.mutex);
    const auto it = cache.map.find(key);
    if (it != cache.map.end()) {
      entry = it->second;
      found = true;
    }
  }
  if (found) {
    cache.hits.fetch_add(1, std::memory_order_relaxed);
  } else {
    Preference pref;
    pref.set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<std::uint64_t>(ws_bytes));
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, static_cast<std::uint32_t>(alignment(p.a)));
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, static_cast<std::uint32_t>(alignment(p.b)));
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, static_cast<std::uint32_t>(alignment(p.c)));
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, static_cast<std::uint32_t>(alignment(p.c)));
    pref.set(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, reduction_mask(p));
    cublasLtMatmulHeuristicResult_t result{};
    int count = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(handle, desc.h, la.h, lb.h, lc.h, lc.h, pref.h, 1, &result, &count);
    if (st == CUBLAS_STATUS_SUCCESS && count > 0 && result.state == CUBLAS_STATUS_SUCCESS &&
        result.workspaceSize <= static_cast<std::size_t>(ws_bytes)) {
      entry.supported = true;
      entry.algo = result.algo;
    } else if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_INVALID_VALUE) {
      MIXTAPE_CUBLAS_CHECK(st);
    }
    cache.misses.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(cache.mutex);
    entry = cache.map.emplace(key, entry).first->second;  // a concurrent first query wins for everyone
  }
  if (!entry.supported) return false;

  const double alpha64 = p.alpha, beta64 = p.beta;
  const float alpha32 = static_cast<float>(p.alpha), beta32 = static_cast<float>(p.beta);
  const bool f64 = p.scale_type == CUDA_R_64F;
  const cublasStatus_t st = cublasLtMatmul(handle, desc.h, f64 ? static_cast<const void*>(&alpha64) : &alpha32, p.a, la.h, p.b,
                                           lb.h, f64 ? static_cast<const void*>(&beta64) : &beta32, p.c, lc.h, p.c, lc.h,
                                           &entry.algo, workspace, static_cast<std::size_t>(ws_bytes), ctx.stream());
  if ((st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE) && p.epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    // The heuristic offered an algorithm that the call then refuses (seen for some epilogue and
    // layout combinations): remember that this key has none, so the next call goes unfused at once.
    std::lock_guard lock(cache.mutex);
    cache.map[key].supported = false;
    return false;
  }
  MIXTAPE_CUBLAS_CHECK(st);
  return true;
}

}  // namespace detail::lt

/// The cuBLASLt algorithm cache's counters (process-wide).
inline AlgoCacheStats algo_cache_stats() {
  auto& cache = detail::lt::algo_cache();
  AlgoCacheStats s;
  s.hits = cache.hits.load();
  s.misses = cache.misses.load();
  s.fused = cache.fused.load();
  s.plain = cache.plain.load();
  s.separate = cache.separate.load();
  std::lock_guard lock(cache.mutex);
  s.entries = cache.map.size();
  return s;
}

/// Empties the algorithm cache (tests; a later call queries the heuristic again).
inline void clear_algo_cache() {
  auto& cache = detail::lt::algo_cache();
  std::lock_guard lock(cache.mutex);
  cache.map.clear();
}

}  // namespace mixtape::blas

#endif  // MIXTAPE_WITH_CUDA
