/// @file quant_formats_test.cpp
/// @brief quant_traits: block sizes, byte counts rounded to whole blocks, statistics with and without
///        double quantization, per-row statistics, and the scalar formats (precision-reference.md 5).
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

#include "mixtape/quant/formats.hpp"

using namespace mixtape;
using quant::quant_traits;

static_assert(quant_traits<quant::nf4>::is_quantized && quant_traits<quant::nf4>::bits == 4);
static_assert(quant_traits<quant::fp4_dq>::granularity == quant::Granularity::per_block);
static_assert(quant_traits<quant::int8_rowwise>::granularity == quant::Granularity::per_row &&
              quant_traits<quant::int8_rowwise>::block_size == 0);
static_assert(quant_traits<quant::scaled<e4m3>>::granularity == quant::Granularity::per_tensor &&
              quant_traits<quant::scaled<e4m3>>::bytes_per_element == 1);
static_assert(quant_traits<bf16>::bytes_per_element == 2 && quant_traits<f64>::bits == 64 &&
              quant_traits<e5m2>::block_size == 1);
static_assert(quant::is_block_quantized_v<quant::nf4> && quant::is_block_quantized_v<quant::int8_rowwise> &&
              quant::is_block_quantized_v<quant::dynamic8_signed> && !quant::is_block_quantized_v<quant::scaled<f16>> &&
              !quant::is_block_quantized_v<f32> && !quant::is_block_quantized_v<int>);
static_assert(quant::is_format_v<quant::nf4_dq> && quant::is_format_v<f16> && !quant::is_format_v<int> &&
              !quant::is_format_v<quant::scaled<int>>);
static_assert(quant::is_scaled_v<quant::scaled<e4m3>> && !quant::is_scaled_v<e4m3>);
static_assert(sizeof(f16) == 2 && sizeof(e4m3) == 1);

TEST_CASE("4-bit formats: 64-element blocks of 32 bytes, f32 absmax per block", "[quant]") {
  using Q = quant_traits<quant::nf4>;
  CHECK(Q::block_size == 64);
  CHECK(Q::bytes_per_block == 32);
  CHECK(Q::storage_bytes(0) == 0);
  CHECK(Q::storage_bytes(1) == 32);  // a partial block occupies a whole one
  CHECK(Q::storage_bytes(64) == 32);
  CHECK(Q::storage_bytes(65) == 64);
  CHECK(Q::statistics_bytes(64) == 4);
  CHECK(Q::statistics_bytes(65) == 8);
  CHECK(Q::bytes_per_element == 0.5625);
  // GPT-2 small's 768x3072 MLP weight: 36864 blocks.
  CHECK(Q::storage_bytes(768 * 3072) == 768 * 3072 / 2);
  CHECK(Q::statistics_bytes(768 * 3072) == 36864 * 4);
  CHECK(std::string(quant_traits<quant::fp4>::name) == "fp4");
  CHECK(std::string(Q::name) == "nf4");
}

TEST_CASE("4-bit double quantization: u8 absmax per block, f32 per 256 blocks, one f32 offset", "[quant]") {
  using Q = quant_traits<quant::nf4_dq>;
  CHECK(Q::storage_bytes(65) == 64);
  CHECK(Q::statistics_bytes(64) == 1 + 4 + 4);
  CHECK(Q::statistics_bytes(64 * 256) == 256 + 4 + 4);
  CHECK(Q::statistics_bytes(64 * 256 + 1) == 257 + 8 + 4);
  CHECK(Q::bytes_per_element == 0.5 + 1.0 / 64 + 4.0 / (64 * 256));
  CHECK(std::string(Q::name) == "nf4-dq");
  CHECK(std::string(quant_traits<quant::fp4_dq>::name) == "fp4-dq");
  // Large tensors approach bytes_per_element (only the per-tensor offset is left out).
  const std::int64_t n = std::int64_t{64} * 256 * 1000;
  CHECK(double(Q::storage_bytes(n) + Q::statistics_bytes(n) - 4) ==
        Approx(Q::bytes_per_element * double(n)).epsilon(0));
}

TEST_CASE("int8 row-wise: one byte per element, f32 absmax per row", "[quant]") {
  using Q = quant_traits<quant::int8_rowwise>;
  CHECK(Q::storage_bytes(768 * 3072) == 768 * 3072);
  CHECK(Q::statistics_bytes(768 * 3072, 3072) == 768 * 4);
  CHECK(Q::statistics_bytes(10, 4) == 3 * 4);  // a short last row still has a scale
  CHECK_THROWS_AS(Q::statistics_bytes(10), ValueError);
  CHECK_THROWS_AS(Q::statistics_bytes(10, 0), ValueError);
}

TEST_CASE("8-bit dynamic optimizer state: blocks of 256, f32 absmax per block", "[quant]") {
  using Q = quant_traits<quant::dynamic8_unsigned>;
  CHECK(Q::block_size == 256);
  CHECK(Q::storage_bytes(257) == 512);
  CHECK(Q::statistics_bytes(257) == 8);
  CHECK(Q::bytes_per_element == 1 + 4.0 / 256);
  CHECK(std::string(quant_traits<quant::dynamic8_signed>::name) == "dynamic8-signed");
}

TEST_CASE("scalar and per-tensor scaled formats", "[quant]") {
  CHECK(quant_traits<f32>::storage_bytes(10) == 40);
  CHECK(quant_traits<bf16>::storage_bytes(10) == 20);
  CHECK(quant_traits<e4m3>::storage_bytes(10) == 10);
  CHECK(quant_traits<f16>::statistics_bytes(10) == 0);
  CHECK(std::string(quant_traits<bf16>::name) == "bf16");
  CHECK(quant_traits<quant::scaled<f16>>::storage_bytes(10) == 20);
  CHECK(quant_traits<quant::scaled<f16>>::statistics_bytes(10) == 4);
}
