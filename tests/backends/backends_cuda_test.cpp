// GPU half of the link-order test: the .cu unit launches kernels, the .cpp unit refuses clearly.
#include <catch2/catch.hpp>

#include "units.hpp"

TEST_CASE("device work runs from the .cu unit and is refused by the .cpp unit", "[cuda][backends]") {
  CHECK(units::host_unit_backend() == "host");
  CHECK(units::cuda_unit_backend() == "host+cuda");
  CHECK(units::cuda_unit_fill_device(0.25f) == 15 * 0.25);
  const std::string message = units::host_unit_fill_device(0.25f);
  CHECK(message.find("BackendError") != std::string::npos);
  CHECK(message.find(".cu") != std::string::npos);
}
