// bench_gemm_host: the host GEMM's throughput. One JSON line per (dtype, shape, ISA, threads):
// wall-clock GFLOP/s (median of the timed runs) and GFLOP per CPU-second of the process (robust
// when other processes share the cores), the load average at the start, and the CPU's peak for
// reference (FMA lanes x 2 flops x ports, measured separately; see bench/NOTES.md).
//
//   bench_gemm_host [threads...]        default: 1 2
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "mixtape/blas/gemm.hpp"

using namespace mixtape;

namespace {

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

double load_average() {
  std::ifstream f("/proc/loadavg");
  double l = -1;
  f >> l;
  return l;
}

template <class T>
void run(const char* name, std::int64_t m, std::int64_t n, std::int64_t k, bool tb, blas::HostIsa isa, int threads) {
  auto ctx = ExecutionContext::host(ContextOptions{threads});
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<T> a(static_cast<std::size_t>(m * k)), b(static_cast<std::size_t>(k * n));
  std::vector<T> c(static_cast<std::size_t>(m * n));
  for (auto& x : a) x = T(u(rng));
  for (auto& x : b) x = T(u(rng));
  blas::GemmDesc d;
  d.m = m;
  d.n = n;
  d.k = k;
  d.a = {a.data(), dtype_v<T>, false, k, 0, nullptr, blas::ScaleMode::none};
  d.b = {b.data(), dtype_v<T>, tb, tb ? k : n, 0, nullptr, blas::ScaleMode::none};
  d.c.data = c.data();
  d.c.dtype = dtype_v<T>;
  d.c.ld = n;
  d.host_isa = isa;
  const double flop = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const double load = load_average();
  blas::gemm(ctx, d);  // warm-up: scratch buffers, page faults
  const int reps = std::max(3, static_cast<int>(2e10 / flop));
  std::vector<double> wall;
  const double c0 = cpu_seconds();
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    blas::gemm(ctx, d);
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double cpu = (cpu_seconds() - c0) / reps;
  std::sort(wall.begin(), wall.end());
  std::printf("{\"bench\": \"gemm_host\", \"shape\": \"%s\", \"dtype\": \"%s\", \"m\": %lld, \"n\": %lld, \"k\": %lld, "
              "\"op\": \"N%s\", \"isa\": \"%s\", \"threads\": %d, \"gflops_wall_median\": %.1f, \"gflops_wall_best\": %.1f, "
              "\"gflop_per_cpu_second\": %.1f, \"reps\": %d, \"loadavg_1min\": %.2f}\n",
              name, dtype_name(dtype_v<T>).data(), static_cast<long long>(m), static_cast<long long>(n),
              static_cast<long long>(k), tb ? "T" : "N", blas::detail::host::kernel_name(dtype_v<T>, isa),
              threads, flop / wall[wall.size() / 2] / 1e9, flop / wall.front() / 1e9, flop / cpu / 1e9, reps, load);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads;
  for (int i = 1; i < argc; ++i) threads.push_back(std::atoi(argv[i]));
  if (threads.empty()) threads = {1, 2};
  for (int t : threads) {
    run<float>("512^3", 512, 512, 512, false, blas::HostIsa::best, t);
    run<float>("gpt qkv-ish 2048x768x768 (x W^T)", 2048, 768, 768, true, blas::HostIsa::best, t);
    run<bf16>("512^3", 512, 512, 512, false, blas::HostIsa::best, t);
    run<bf16>("gpt qkv-ish 2048x768x768 (x W^T)", 2048, 768, 768, true, blas::HostIsa::best, t);
    run<bf16>("gpt qkv-ish 2048x768x768 (x W^T)", 2048, 768, 768, true, blas::HostIsa::avx512, t);
    run<bf16>("gpt mlp fc 2048x3072x768 (x W^T)", 2048, 3072, 768, true, blas::HostIsa::best, t);
    run<f16>("gpt qkv-ish 2048x768x768 (x W^T)", 2048, 768, 768, true, blas::HostIsa::best, t);
    run<double>("512^3", 512, 512, 512, false, blas::HostIsa::best, t);
    if (blas::detail::host::cpu_has_avx2()) run<float>("512^3", 512, 512, 512, false, blas::HostIsa::avx2, t);
    run<float>("512^3", 512, 512, 512, false, blas::HostIsa::portable, t);
  }
}
