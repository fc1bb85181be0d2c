// Tensor and TensorRef: shapes, views, storage sizes from format traits, attachments, bad input.
#include <catch2/catch.hpp>

#include "mixtape/core/tensor.hpp"

using namespace mixtape;

TEST_CASE("contiguous layout, numel and strides", "[core][tensor]") {
  auto ctx = ExecutionContext::host();
  auto x = Tensor<float>::empty(ctx, {2, 3, 4});
  CHECK(x.rank() == 3);
  CHECK(x.numel() == 24);
  CHECK(x.stride(0) == 12);
  CHECK(x.stride(1) == 4);
  CHECK(x.stride(-1) == 1);
  CHECK(x.size(-2) == 3);
  CHECK(x.is_contiguous());
  CHECK(x.nbytes() == 96);
  CHECK(x.dtype() == DType::f32);
  CHECK(reinterpret_cast<std::uintptr_t>(x.data()) % 16 == 0);
}

TEST_CASE("int64 shapes: byte sizes beyond 2^32", "[core][tensor]") {
  // GPT-2 small's f32 logits at batch 16: 16 * 1024 * 50304 * 4 bytes = 3.3 GB.
  const Layout l = Layout::contiguous({16, 1024, 50304});
  CHECK(l.numel() == 16LL * 1024 * 50304);
  CHECK(storage_bytes<float>(l.numel()) == 3296722944LL);
  CHECK(l.strides[0] == 1024LL * 50304);
}

TEST_CASE("transposed and sliced views share storage and index right", "[core][tensor]") {
  auto ctx = ExecutionContext::host();
  auto x = Tensor<float>::empty(ctx, {3, 5});
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) x.at({i, j}) = static_cast<float>(10 * i + j);
  auto xt = x.transposed();
  CHECK(xt.shape() == Shape{5, 3});
  CHECK_FALSE(xt.is_contiguous());
  CHECK(xt.aliases(x));
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) CHECK(xt.at({j, i}) == x.at({i, j}));
  auto s = x.slice(1, 2, 3);  // columns 2..4
  CHECK(s.shape() == Shape{3, 3});
  CHECK(s.at({1, 0}) == 12.0f);
  CHECK(s.offset() == 2);
  auto parts = Tensor<float>::empty(ctx, {2, 4, 12}).split_last(3);
  REQUIRE(parts.size() == 3);
  CHECK(parts[1].shape() == Shape{2, 4, 4});
  CHECK(parts[1].offset() == 4);
  CHECK(parts[2].stride(1) == 12);
}

TEST_CASE("reshape views contiguous tensors and infers -1", "[core][tensor]") {
  auto ctx = ExecutionContext::host();
  auto x = Tensor<f16>::empty(ctx, {4, 6});
  auto y = x.reshape({2, -1, 3});
  CHECK(y.shape() == Shape{2, 4, 3});
  CHECK(y.aliases(x));
  CHECK(x.flatten().shape() == Shape{24});
  CHECK_THROWS_AS(x.reshape({5, -1}), ShapeError);
  CHECK_THROWS_AS(x.transposed().reshape({24}), ShapeError);
  CHECK_THROWS_WITH(x.reshape({7, 3}), Catch::Contains("cannot view (4, 6)") && Catch::Contains("(7, 3)"));
}

TEST_CASE("storage sizes follow format traits; packed blocks fit", "[core][tensor]") {
  auto ctx = ExecutionContext::host();
  CHECK(storage_bytes<bf16>(7) == 14);
  CHECK(storage_bytes<e4m3>(7) == 7);
  CHECK(storage_bytes(DType::f64, 3) == 24);
  // 4-bit codes come in whole blocks of 64 (32 bytes), so 100 elements take two blocks.
  CHECK(storage_bytes<quant::nf4>(100) == quant::quant_traits<quant::nf4>::storage_bytes(100));
  CHECK(storage_bytes<quant::nf4>(100) >= 50);
  CHECK(storage_bytes<quant::nf4>(128) == 64);
  auto w = Tensor<quant::nf4>::empty(ctx, {10, 10});
  CHECK(w.nbytes() == storage_bytes<quant::nf4>(100));
  CHECK(w.storage()->bytes() == w.nbytes());
  // Packed elements are not addressable one by one: views that would need it are refused.
  CHECK_THROWS_AS(w.transposed(), ShapeError);
  CHECK_THROWS_AS(w.slice(0, 1, 2), ShapeError);
  CHECK(dtype_bits(DType::fp4) == 4);
  CHECK(is_packed(DType::nf4));
  CHECK_FALSE(is_packed(DType::e5m2));
}

TEST_CASE("dtype names and visit_dtype round trip", "[core][dtype]") {
  for (int i = 0; i < kDTypeCount; ++i) {
    const auto d = static_cast<DType>(i);
    const DType back = visit_dtype(d, []<class T>() { return dtype_v<T>; });
    CHECK(back == d);
    CHECK(dtype_name(d) != "invalid");
  }
  CHECK(dtype_name(DType::bf16) == "bf16");
  CHECK(dtype_bits(DType::e4m3) == 8);
}

TEST_CASE("TensorRef erases and checks the element type", "[core][tensor]") {
  auto ctx = ExecutionContext::host();
  auto x = Tensor<bf16>::empty(ctx, {3, 2});
  TensorRef r = x;
  CHECK(r.dtype() == DType::bf16);
  CHECK(r.data() == static_cast<void*>(x.data()));
  CHECK(r.as<bf16>().aliases(x));
  CHECK_THROWS_AS(r.as<float>(), DTypeError);
  CHECK_THROWS_WITH(r.as<float>(), Catch::Contains("tensor is bf16, expected f32"));
  auto s = x.slice(0, 1, 2);
  CHECK(TensorRef(s).data() == static_cast<void*>(x.data() + 2));
}

TEST_CASE("attachments: scale, scale_inv, amax and column-wise copy", "[core][tensor]") {
  auto ctx = ExecutionContext::host();
  auto q = Tensor<e4m3>::empty(ctx, {4, 8});
  CHECK(q.scale() == nullptr);
  auto scale = Tensor<float>::empty(ctx, {1});
  scale.at({0}) = 2.0f;
  q.set_scale(scale);
  q.set_scale_inv(Tensor<float>::empty(ctx, {1}));
  q.set_amax(Tensor<float>::empty(ctx, {1}));
  q.set_columnwise(Tensor<e4m3>::empty(ctx, {8, 4}));
  REQUIRE(q.scale() != nullptr);
  CHECK(q.scale()->at({0}) == 2.0f);
  CHECK(q.columnwise()->shape() == Shape{8, 4});
  // Views share the whole tensor's attachments; so does the type-erased handle.
  CHECK(q.transposed().scale() == q.scale());
  CHECK(TensorRef(q).as<e4m3>().amax() == q.amax());
  CHECK_THROWS_AS(q.set_columnwise(Tensor<e4m3>::empty(ctx, {3, 3})), ShapeError);
}

TEST_CASE("bad input: shapes, indices and dimensions are named in the error", "[core][tensor]") {
  auto ctx = ExecutionContext::host();
  auto x = Tensor<float>::empty(ctx, {2, 3});
  CHECK_THROWS_AS(x.at({0}), ShapeError);
  CHECK_THROWS_WITH(x.at({0, 3}), Catch::Contains("index 3 out of range [0, 3) in dimension 1"));
  CHECK_THROWS_AS(x.size(2), ShapeError);
  CHECK_THROWS_WITH(x.slice(1, 2, 2), Catch::Contains("within [0, 3)"));
  CHECK_THROWS_AS(x.split_last(2), ShapeError);
  CHECK_THROWS_AS((Shape{1, 2, 3, 4, 5, 6, 7, 8, 9}), ShapeError);
  CHECK_THROWS_AS((Shape{2, -1}), ShapeError);
  // A view larger than its storage is refused at construction.
  auto small = std::make_shared<Storage>(ctx.allocator_ptr(), 16, MemoryRole::activations, nullptr);
  CHECK_THROWS_WITH((Tensor<float>(small, Layout::contiguous({5}))), Catch::Contains("needs 20 bytes, its storage has 16"));
}

TEST_CASE("errors carry the file and line where they were raised", "[core][errors]") {
  auto ctx = ExecutionContext::host();
  try {
    (void)Tensor<float>::empty(ctx, {2, 3}).slice(0, 1, 5);
    FAIL("an out-of-range slice was accepted");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.file()).find("layout.hpp") != std::string::npos);
    CHECK(e.line() > 0);
    CHECK(std::string(e.what()).rfind(std::string(e.file()) + ":" + std::to_string(e.line()) + ": ShapeError: slice:", 0) == 0);
    CHECK(e.message().find("within [0, 2)") != std::string::npos);
  }
}
