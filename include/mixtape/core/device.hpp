/// @file device.hpp
/// @brief Device identity (host CPU or a CUDA ordinal) and queries about CUDA availability.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "mixtape/core/error.hpp"

namespace mixtape {

/// Where a tensor's bytes live.
enum class DeviceKind : std::uint8_t { cpu, cuda };

/// A device: the host, or one CUDA GPU by ordinal. Cheap to copy and compare.
class Device {
 public:
  constexpr Device() noexcept = default;
  static constexpr Device cpu() noexcept { return Device(DeviceKind::cpu, 0); }
  static constexpr Device cuda(int index = 0) noexcept { return Device(DeviceKind::cuda, index); }

  constexpr DeviceKind kind() const noexcept { return kind_; }
  constexpr int index() const noexcept { return index_; }
  constexpr bool is_cpu() const noexcept { return kind_ == DeviceKind::cpu; }
  constexpr bool is_cuda() const noexcept { return kind_ == DeviceKind::cuda; }

  /// "cpu" or "cuda:N".
  std::string to_string() const { return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index_); }

  friend constexpr bool operator==(Device a, Device b) noexcept = default;

 private:
  constexpr Device(DeviceKind kind, int index) noexcept : kind_(kind), index_(index) {}
  DeviceKind kind_ = DeviceKind::cpu;
  int index_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, Device d) { return os << d.to_string(); }

/// Number of CUDA devices this process can use; 0 without the CUDA runtime, a driver or a GPU.
inline int cuda_device_count() noexcept {
#if defined(MIXTAPE_WITH_CUDA)
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" status so later calls start clean
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

/// The default device for a program: the first GPU when one is present, else the host.
inline Device default_device() noexcept { return cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu(); }

/// Parses "cpu", "cuda" or "cuda:N"; throws ValueError naming the accepted forms otherwise.
inline Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    int index = 0;
    for (std::size_t i = 5; i < text.size(); ++i) {
      MIXTAPE_EXPECT(text[i] >= '0' && text[i] <= '9', ValueError, "device: expected cpu, cuda or cuda:N, got '", text, "'");
      index = index * 10 + (text[i] - '0');
    }
    return Device::cuda(index);
  }
  MIXTAPE_THROW(ValueError, "device: expected cpu, cuda or cuda:N, got '", text, "'");
}

namespace detail {
/// Throws DeviceError unless `device` can be used by this program.
inline void check_device_usable(Device device) {
  if (device.is_cpu()) return;
  if constexpr (!kWithCudaRuntime) {
    MIXTAPE_THROW(BackendError, "device ", device, " requested, but mixtape was built without the CUDA runtime");
  }
  const int count = cuda_device_count();
  MIXTAPE_EXPECT(device.index() >= 0 && device.index() < count, DeviceError, "device ", device,
                 " does not exist: expected cuda:0..cuda:", count - 1, " (", count, " CUDA devices present)");
}
}  // namespace detail

}  // namespace mixtape
