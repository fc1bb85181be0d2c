// Cross-check against a third implementation: float32 casts recorded from ml_dtypes/numpy
// (golden_ml_dtypes.inc, made by gen_golden.py), whose non-saturating nearest-even casts are the
// ones PyTorch performs (float8_e4m3fn: NaN past 464; float8_e5m2, float16, bfloat16: inf). NaN
// results are compared as "a NaN of the same sign": ml_dtypes keeps NaN payloads where mixtape
// returns the all-ones NaN (rounding.hpp).
#include <cstdint>

#include "numeric/numeric_test_util.hpp"

using namespace mixtape;
using mixtape::test::hex;
using mixtape::test::Mismatches;

namespace {

struct GoldenCase {
  std::uint32_t input;
  std::uint32_t output;
};

#include "numeric/golden_ml_dtypes.inc"

template <class T, std::size_t N>
void check_golden(const GoldenCase (&cases)[N]) {
  const auto& f = test::ref_format<T>();
  Mismatches wrong;
  for (const GoldenCase& c : cases) {
    const float x = detail::bit_cast<float>(c.input);
    const std::uint32_t got = convert<T>(x).bits();
    const test::ref::Decoded want = test::ref::decode(f, c.output);
    if (want.kind == test::ref::Kind::nan) {
      const test::ref::Decoded mine = test::ref::decode(f, got);
      if (mine.kind != test::ref::Kind::nan || mine.negative != want.negative) {
        wrong.add(f.name, "(", hex(c.input), ") = ", hex(got), ", ml_dtypes NaN ", hex(c.output));
      }
    } else if (got != c.output) {
      wrong.add(f.name, "(", hex(c.input), " = ", x, ") = ", hex(got), ", ml_dtypes ", hex(c.output));
    }
  }
  INFO(N << " golden cases");
  MIXTAPE_CHECK_NONE(wrong);
  CHECK(N > 50);
}

}  // namespace

TEST_CASE("float casts agree with ml_dtypes (PyTorch's cast semantics)", "[numeric][golden]") {
  check_golden<f16>(kGoldenF16);
  check_golden<bf16>(kGoldenBF16);
  check_golden<e4m3>(kGoldenE4M3);
  check_golden<e5m2>(kGoldenE5M2);
}
