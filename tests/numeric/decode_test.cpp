// Every bit pattern of f16, bf16 (65536 each), e4m3 and e5m2 (256 each) decodes to the value the
// format definition gives: widening to float and to double, through the scalar types' operators
// and through convert, with -0, subnormals, inf and NaN; and the classification functions agree.
#include <cmath>

#include "numeric/numeric_test_util.hpp"

using namespace mixtape;
using mixtape::test::hex;
using mixtape::test::Mismatches;

namespace {

/// The library's documented NaN widening (rounding.hpp): same sign, quiet bit set, fraction
/// top-aligned. Written here from that statement, for the reference's NaN entries.
std::uint32_t expected_f32_nan(const test::ref::Format& f, std::uint32_t code) {
  const std::uint32_t negative = (code >> (f.exponent_bits + f.mantissa_bits)) & 1u;
  const std::uint32_t fraction = code & ((1u << f.mantissa_bits) - 1);
  return (negative << 31) | 0x7F800000u | 0x00400000u | (fraction << (23 - f.mantissa_bits));
}
std::uint64_t expected_f64_nan(const test::ref::Format& f, std::uint32_t code) {
  const std::uint64_t negative = (code >> (f.exponent_bits + f.mantissa_bits)) & 1u;
  const std::uint64_t fraction = code & ((1u << f.mantissa_bits) - 1);
  return (negative << 63) | 0x7FF0000000000000ull | 0x0008000000000000ull | (fraction << (52 - f.mantissa_bits));
}

template <class T>
void check_every_pattern() {
  const auto& f = test::ref_format<T>();
  Mismatches wrong;
  std::uint32_t finite = 0, subnormal = 0, nans = 0, infs = 0;
  for (std::uint32_t code = 0; code < (1u << f.bits()); ++code) {
    const T x = T::from_bits(static_cast<typename T::storage_type>(code));
    const test::ref::Decoded d = test::ref::decode(f, code);
    const float as_float = static_cast<float>(x);
    const double as_double = static_cast<double>(x);
    const std::uint32_t fb = test::float_bits(as_float);
    const std::uint64_t db = test::double_bits(as_double);

    if (x.bits() != code) wrong.add("from_bits/bits round trip of ", hex(code));
    if (test::float_bits(convert<float>(x)) != fb) wrong.add(hex(code), ": convert<float> differs from operator float");
    if (test::double_bits(convert<double>(x)) != db)
      wrong.add(hex(code), ": convert<double> differs from operator double");
    if (test::double_bits(convert<double>(as_float)) != db) wrong.add(hex(code), ": float -> double not exact");

    switch (d.kind) {
      case test::ref::Kind::finite: {
        ++finite;
        const std::uint32_t magnitude = code & (f.sign_bit() - 1);
        if (magnitude != 0 && magnitude < (1u << f.mantissa_bits)) ++subnormal;
        // Exact equality, and the sign of zero.
        if (static_cast<long double>(as_float) != d.value || std::signbit(as_float) != d.negative) {
          wrong.add(f.name, " ", hex(code), " -> float ", as_float, ", reference ", static_cast<double>(d.value));
        }
        if (static_cast<long double>(as_double) != d.value || std::signbit(as_double) != d.negative) {
          wrong.add(f.name, " ", hex(code), " -> double ", as_double, ", reference ", static_cast<double>(d.value));
        }
        if (isnan(x) || isinf(x) || !isfinite(x)) wrong.add(hex(code), ": finite misclassified");
        break;
      }
      case test::ref::Kind::inf:
        ++infs;
        if (!std::isinf(as_float) || std::signbit(as_float) != d.negative || !std::isinf(as_double) ||
            std::signbit(as_double) != d.negative) {
          wrong.add(f.name, " ", hex(code), " should be ", d.negative ? "-inf" : "+inf");
        }
        if (!isinf(x) || isnan(x) || isfinite(x)) wrong.add(hex(code), ": inf misclassified");
        break;
      case test::ref::Kind::nan:
        ++nans;
        if (fb != expected_f32_nan(f, code)) wrong.add(f.name, " NaN ", hex(code), " -> float bits ", hex(fb));
        if (db != expected_f64_nan(f, code)) wrong.add(f.name, " NaN ", hex(code), " -> double bits ", hex(db));
        if (!isnan(x) || isinf(x) || isfinite(x)) wrong.add(hex(code), ": NaN misclassified");
        break;
    }
    if (signbit(x) != d.negative) wrong.add(hex(code), ": signbit");
  }
  MIXTAPE_CHECK_NONE(wrong);
  // The census itself is part of the definition.
  INFO(f.name << ": finite " << finite << ", subnormal " << subnormal << ", inf " << infs << ", NaN " << nans);
  const std::uint32_t fraction_codes = 1u << f.mantissa_bits;
  CHECK(subnormal == 2 * (fraction_codes - 1));
  if (f.ieee_specials) {
    CHECK(infs == 2);
    CHECK(nans == 2 * (fraction_codes - 1));
  } else {
    CHECK(infs == 0);
    CHECK(nans == 2);
  }
  CHECK(finite + infs + nans == (1u << f.bits()));
}

}  // namespace

TEST_CASE("every f16 bit pattern decodes to its IEEE binary16 value", "[numeric][decode]") {
  check_every_pattern<f16>();
}
TEST_CASE("every bf16 bit pattern decodes to its bfloat16 value", "[numeric][decode]") { check_every_pattern<bf16>(); }
TEST_CASE("every e4m3 bit pattern decodes to its OCP E4M3 value", "[numeric][decode]") { check_every_pattern<e4m3>(); }
TEST_CASE("every e5m2 bit pattern decodes to its OCP E5M2 value", "[numeric][decode]") { check_every_pattern<e5m2>(); }

TEST_CASE("landmark encodings decode to the values the specifications list", "[numeric][decode]") {
  // Numbers quoted by the specifications themselves, independent of both implementations.
  CHECK(static_cast<float>(f16::from_bits(0x3C00)) == 1.0f);
  CHECK(static_cast<float>(f16::from_bits(0x7BFF)) == 65504.0f);
  CHECK(static_cast<float>(f16::from_bits(0x0400)) == 0x1p-14f);
  CHECK(static_cast<float>(f16::from_bits(0x0001)) == 0x1p-24f);
  CHECK(static_cast<float>(f16::from_bits(0x3555)) == 0.333251953125f);
  CHECK(static_cast<float>(bf16::from_bits(0x3F80)) == 1.0f);
  CHECK(static_cast<float>(bf16::from_bits(0x4049)) == 3.140625f);
  CHECK(static_cast<float>(bf16::from_bits(0x7F7F)) == 0x1.FEp127f);
  CHECK(static_cast<float>(bf16::from_bits(0x0001)) == 0x1p-133f);
  CHECK(static_cast<float>(e4m3::from_bits(0x7E)) == 448.0f);
  CHECK(static_cast<float>(e4m3::from_bits(0x08)) == 0x1p-6f);
  CHECK(static_cast<float>(e4m3::from_bits(0x01)) == 0x1p-9f);
  CHECK(static_cast<float>(e4m3::from_bits(0x78)) == 256.0f);  // the extra binade of "fn"
  CHECK(std::isnan(static_cast<float>(e4m3::from_bits(0x7F))));
  CHECK(static_cast<float>(e5m2::from_bits(0x7B)) == 57344.0f);
  CHECK(static_cast<float>(e5m2::from_bits(0x04)) == 0x1p-14f);
  CHECK(static_cast<float>(e5m2::from_bits(0x01)) == 0x1p-16f);
  CHECK(std::isinf(static_cast<float>(e5m2::from_bits(0xFC))));
  // E5M2 is f16 without its low byte, and bf16 is f32 without its low half.
  for (std::uint32_t code = 0; code < 256; ++code) {
    const float a = static_cast<float>(e5m2::from_bits(static_cast<std::uint8_t>(code)));
    const float b = static_cast<float>(f16::from_bits(static_cast<std::uint16_t>(code << 8)));
    INFO(code);
    CHECK(test::float_bits(a) == test::float_bits(b));
  }
  for (std::uint32_t code = 0; code < 65536; code += 257) {
    const float a = static_cast<float>(bf16::from_bits(static_cast<std::uint16_t>(code)));
    const test::ref::Decoded d = test::ref::decode(test::ref::kBF16, code);
    if (d.kind != test::ref::Kind::nan) CHECK(test::float_bits(a) == (code << 16));
  }
}
