// A program made of a .cpp and a .cu unit behaves the same whatever the link order (the CMake file
// links this test twice, with the two units in either order).
#include <catch2/catch.hpp>

#include "units.hpp"

TEST_CASE("each unit keeps its own backend whatever the link order", "[backends]") {
  CHECK(units::host_unit_backend() == "host");
  CHECK(units::cuda_unit_backend() == "host+cuda");
  CHECK(units::host_unit_fill_host(1.5f) == 15 * 1.5);
  CHECK(units::cuda_unit_fill_host(-2.0f) == 15 * -2.0);
}
