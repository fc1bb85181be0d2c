/// @file thread_pool.hpp
/// @brief A fixed pool of host threads running static-partitioned parallel loops.
///
/// Host kernels split their index range into one contiguous chunk per thread (the calling thread
/// takes the first), so the split and hence every reduction order depends only on the range and the
/// thread count: results are reproducible run to run for a given `host_threads`.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mixtape {

class ThreadPool {
 public:
  /// @param threads total threads including the caller; 0 picks std::thread::hardware_concurrency().
  explicit ThreadPool(int threads = 0) {
    if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    size_ = threads;
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const noexcept { return size_; }

  /// Runs `body(begin, end, chunk)` over [0, n) split into at most size() chunks of at least `grain`
  /// indices; returns when all are done. The first exception thrown by a chunk is rethrown.
  void parallel_for(std::int64_t n, std::int64_t grain, const std::function<void(std::int64_t, std::int64_t, int)>& body) {
    if (n <= 0) return;
    const int chunks = chunk_count(n, grain);
    if (chunks == 1) {
      body(0, n, 0);
      return;
    }
    std::unique_lock call_lock(call_mutex_);  // one parallel loop at a time; nested loops run inline
    {
      std::lock_guard lock(mutex_);
      job_ = &body;
      n_ = n;
      chunks_ = chunks;
      pending_ = chunks - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_chunk(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  /// The number of chunks parallel_for uses for (n, grain): callers size per-chunk partials with it.
  int chunk_count(std::int64_t n, std::int64_t grain) const noexcept {
    if (workers_.empty() || inside_chunk()) return 1;
    grain = std::max<std::int64_t>(grain, 1);
    return static_cast<int>(std::clamp<std::int64_t>(n / grain, 1, size_));
  }

  /// [begin, end) of chunk `c` of `chunks` over [0, n): equal sizes, remainder spread over the first.
  static std::pair<std::int64_t, std::int64_t> chunk_range(std::int64_t n, int chunks, int c) noexcept {
    const std::int64_t base = n / chunks, extra = n % chunks;
    const std::int64_t begin = c * base + std::min<std::int64_t>(c, extra);
    return {begin, begin + base + (c < extra ? 1 : 0)};
  }

 private:
  // True while this thread runs a chunk: a nested parallel_for then runs inline instead of waiting
  // for workers that are busy with the outer loop.
  static bool& inside_chunk() noexcept {
    thread_local bool inside = false;
    return inside;
  }
  void run_chunk(int c) {
    const auto [begin, end] = chunk_range(n_, chunks_, c);
    inside_chunk() = true;
    try {
      (*job_)(begin, end, c);
      inside_chunk() = false;
    } catch (...) {
      inside_chunk() = false;
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
  void worker_loop(int index) {
    std::uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (index >= chunks_) continue;
      }
      run_chunk(index);
      std::lock_guard lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  int size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex call_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(std::int64_t, std::int64_t, int)>* job_ = nullptr;
  std::int64_t n_ = 0;
  int chunks_ = 0;
  int pending_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace mixtape
