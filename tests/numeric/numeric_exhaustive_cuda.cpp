// On the GPU: every one of the 2^32 float inputs converts to the same bits on the device and on the
// host, for each of f16, bf16, e4m3, e5m2 and each rounding mode (stochastic with a random word
// derived from the input), 68.7 billion comparisons; every encoding of each narrow format converts
// identically to every format (widening to f32 and f64 included); and 2^24 random doubles convert
// identically. The host side is this file, compiled by the host compiler; the device side is
// numeric_exhaustive_cuda.cu, so this also checks that a program mixing .cpp and .cu units agrees
// with itself. Host work is spread over all cores; about 30 s on an H100 host with 16 cores.
#include "numeric/numeric_exhaustive_cuda.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mixtape/numeric/numeric.hpp"

using namespace mixtape;
using namespace mixtape::test::cuda_numeric;

namespace {

constexpr std::uint64_t kChunk = std::uint64_t{1} << 28;  // floats per device pass (512 MB of f16)
constexpr std::uint64_t kDoubles = std::uint64_t{1} << 24;
constexpr int kKeep = 5;

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

/// Mismatch count and the first few cases, per worker thread, merged afterwards.
struct Tally {
  std::uint64_t count = 0;
  std::vector<std::string> first;
  void add(std::uint64_t input, std::uint64_t host, std::uint64_t device) {
    if (count++ < kKeep) first.push_back("input " + hex(input) + ": host " + hex(host) + ", device " + hex(device));
  }
  void merge(const Tally& o) {
    count += o.count;
    for (const auto& s : o.first) {
      if (first.size() < kKeep) first.push_back(s);
    }
  }
  std::string report() const {
    std::ostringstream os;
    os << count << " mismatches";
    for (const auto& s : first) os << "\n  " << s;
    return os.str();
  }
};

/// Runs body(begin, end, tally) over [0, n) on every core.
template <class Body>
Tally parallel_compare(std::uint64_t n, Body body) {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<Tally> tallies(threads);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] { body(n * t / threads, n * (t + 1) / threads, tallies[t]); });
  }
  for (auto& th : pool) th.join();
  Tally total;
  for (const auto& t : tallies) total.merge(t);
  return total;
}

template <class T, Rounding R>
void check_all_floats(DeviceConverter& device, Format format) {
  using S = typename numeric_traits<T>::storage_type;
  const auto start = std::chrono::steady_clock::now();
  Tally total;
  std::uint64_t portable = 0;
  for (std::uint64_t begin = 0; begin < (std::uint64_t{1} << 32); begin += kChunk) {
    portable += device.narrow_floats(format, R, begin, kChunk);
    const S* out = static_cast<const S*>(device.host_output());
    total.merge(parallel_compare(kChunk, [&](std::uint64_t lo, std::uint64_t hi, Tally& tally) {
      for (std::uint64_t i = lo; i < hi; ++i) {
        const auto bits = static_cast<std::uint32_t>(begin + i);
        const S host = convert<T, R>(detail::bit_cast<float>(bits), random_word(bits)).bits();
        if (host != out[i]) tally.add(bits, host, out[i]);
      }
    }));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("  f32 -> %-4s %-22s all 2^32 inputs: %llu mismatches, %llu device-portable differences (%.1f s)\n",
              numeric_traits<T>::name, rounding_name(R), static_cast<unsigned long long>(total.count),
              static_cast<unsigned long long>(portable), seconds);
  INFO("f32 -> " << numeric_traits<T>::name << ", " << rounding_name(R) << ": " << total.report());
  CHECK(total.count == 0);
  // Non-zero only if a CUDA instruction disagrees with the portable code on the device; then
  // MIXTAPE_NUMERIC_NO_CUDA_INTRINSICS, or narrowing numeric/detail/cuda_intrinsics.hpp, is the fix.
  INFO("device: convert<> vs the portable code path");
  CHECK(portable == 0);
}

template <class T>
void check_format(DeviceConverter& device, Format format) {
  check_all_floats<T, Rounding::nearest_even>(device, format);
  check_all_floats<T, Rounding::nearest_even_saturate>(device, format);
  check_all_floats<T, Rounding::stochastic>(device, format);
  check_all_floats<T, Rounding::stochastic_saturate>(device, format);
}

template <class F>
void with_format(Format f, F&& fn) {
  switch (f) {
    case Format::f16:
      return fn.template operator()<f16>();
    case Format::bf16:
      return fn.template operator()<bf16>();
    case Format::e4m3:
      return fn.template operator()<e4m3>();
    case Format::e5m2:
      return fn.template operator()<e5m2>();
  }
}
template <class F>
void with_target(Target t, F&& fn) {
  switch (t) {
    case Target::f16:
      return fn.template operator()<f16>();
    case Target::bf16:
      return fn.template operator()<bf16>();
    case Target::e4m3:
      return fn.template operator()<e4m3>();
    case Target::e5m2:
      return fn.template operator()<e5m2>();
    case Target::f32:
      return fn.template operator()<float>();
    case Target::f64:
      return fn.template operator()<double>();
  }
}
template <class F>
void with_rounding(Rounding r, F&& fn) {
  switch (r) {
    case Rounding::nearest_even:
      return fn.template operator()<Rounding::nearest_even>();
    case Rounding::nearest_even_saturate:
      return fn.template operator()<Rounding::nearest_even_saturate>();
    case Rounding::stochastic:
      return fn.template operator()<Rounding::stochastic>();
    case Rounding::stochastic_saturate:
      return fn.template operator()<Rounding::stochastic_saturate>();
  }
}

DeviceConverter& shared_device() {
  static DeviceConverter device(kChunk * 2);  // 2^28 f16 results, or 2^24 doubles' 8-byte results
  static const bool announced = [] {
    std::printf("device: %s, host threads: %u\n", device.device_name().c_str(), std::thread::hardware_concurrency());
    return true;
  }();
  (void)announced;
  return device;
}

}  // namespace

TEST_CASE("all 2^32 floats convert to f16 identically on device and host, every mode", "[numeric][cuda]") {
  check_format<f16>(shared_device(), Format::f16);
}
TEST_CASE("all 2^32 floats convert to bf16 identically on device and host, every mode", "[numeric][cuda]") {
  check_format<bf16>(shared_device(), Format::bf16);
}
TEST_CASE("all 2^32 floats convert to e4m3 identically on device and host, every mode", "[numeric][cuda]") {
  check_format<e4m3>(shared_device(), Format::e4m3);
}
TEST_CASE("all 2^32 floats convert to e5m2 identically on device and host, every mode", "[numeric][cuda]") {
  check_format<e5m2>(shared_device(), Format::e5m2);
}

TEST_CASE("every encoding converts to every format identically on device and host, every mode", "[numeric][cuda]") {
  DeviceConverter& device = shared_device();
  for (const Format from : kFormats) {
    for (const Target to : kTargets) {
      for (const Rounding r : kAllRoundings) {
        with_format(from, [&]<class S>() {
          with_target(to, [&]<class T>() {
            with_rounding(r, [&]<Rounding R>() {
              device.convert_codes(from, to, r);
              const auto* out = static_cast<const std::uint64_t*>(device.host_output());
              Tally tally;
              for (std::uint32_t code = 0; code < (1u << numeric_traits<S>::bits); ++code) {
                const S x = S::from_bits(static_cast<typename S::storage_type>(code));
                const std::uint64_t host = detail::to_storage(convert<T, R>(x, random_word(code)));
                if (host != out[code]) tally.add(code, host, out[code]);
              }
              INFO(numeric_traits<S>::name << " -> " << numeric_traits<T>::name << ", " << rounding_name(R) << ": "
                                           << tally.report());
              CHECK(tally.count == 0);
            });
          });
        });
      }
    }
  }
}

TEST_CASE("random doubles convert to every format identically on device and host, every mode", "[numeric][cuda]") {
  DeviceConverter& device = shared_device();
  for (const Target to : kTargets) {
    for (const Rounding r : kAllRoundings) {
      with_target(to, [&]<class T>() {
        with_rounding(r, [&]<Rounding R>() {
          device.convert_doubles(to, r, kDoubles);
          const auto* out = static_cast<const std::uint64_t*>(device.host_output());
          const Tally tally = parallel_compare(kDoubles, [&](std::uint64_t lo, std::uint64_t hi, Tally& t) {
            for (std::uint64_t i = lo; i < hi; ++i) {
              const double x = detail::bit_cast<double>(random_double_bits(i));
              const std::uint64_t host = detail::to_storage(convert<T, R>(x, random_word(i)));
              if (host != out[i]) t.add(random_double_bits(i), host, out[i]);
            }
          });
          INFO("f64 -> " << numeric_traits<T>::name << ", " << rounding_name(R) << ": " << tally.report());
          CHECK(tally.count == 0);
        });
      });
    }
  }
}
