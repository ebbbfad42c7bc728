// Tensors: views share storage, strides and contiguity, factories, printing,
// the generator, dtype conversion, and the errors' wording.
#include <cmath>
#include <cstring>
#include <limits>

#include "autograd/ops.h"
#include "catch_compat.h"

using namespace ms;

static bool shares_storage(const Tensor& a, const Tensor& b) {
  return a.storage() == b.storage();
}

TEST_CASE("chunk shards a 1000x10 tensor into four 250x10 views without a copy",
          "[tensor][views]") {
  Tensor t = reshape(arange(10000), {1000, 10});
  std::vector<Tensor> shards = chunk(t, 4, 0);
  REQUIRE(shards.size() == 4);
  for (int i = 0; i < 4; ++i) {
    CHECK(shards[i].shape() == Shape{250, 10});
    CHECK(shares_storage(shards[i], t));
    CHECK(shards[i].offset() == i * 2500);
    CHECK(shards[i].is_contiguous());
    CHECK(shards[i].host_data<float>()[0] == static_cast<float>(i * 2500));
  }
  // Writing through a view is visible in the base tensor.
  shards[3].host_data<float>()[0] = -1.0f;
  CHECK(t.host_data<float>()[7500] == -1.0f);
  // Sharding columns gives non-contiguous views.
  std::vector<Tensor> cols = chunk(t, 2, 1);
  CHECK(cols[1].shape() == Shape{1000, 5});
  CHECK(cols[1].strides() == Shape{10, 1});
  CHECK_FALSE(cols[1].is_contiguous());
  CHECK(allclose(cat(chunk(t, 3, 1), 1), t));
}

TEST_CASE("chunk and split follow torch's sizes", "[tensor][views]") {
  Tensor t = arange(10);
  auto c = chunk(t, 3, 0);
  REQUIRE(c.size() == 3);
  CHECK(c[0].numel() == 4);
  CHECK(c[2].numel() == 2);
  auto s = split(t, 4, 0);
  REQUIRE(s.size() == 3);
  CHECK(s[2].numel() == 2);
  CHECK(chunk(arange(2), 4, 0).size() == 2);
}

TEST_CASE("transpose, permute and reshape views", "[tensor][views]") {
  Tensor t = reshape(arange(24), {2, 3, 4});
  Tensor tt = transpose(t, 0, 2);
  CHECK(tt.shape() == Shape{4, 3, 2});
  CHECK(tt.strides() == Shape{1, 4, 12});
  CHECK(shares_storage(tt, t));
  CHECK_FALSE(tt.is_contiguous());
  CHECK(tt.to_vector()[1] == 12.0);  // tt[0,0,1] = t[1,0,0]
  Tensor c = contiguous(tt);
  CHECK(c.is_contiguous());
  CHECK_FALSE(shares_storage(c, t));
  CHECK(c.to_vector() == tt.to_vector());

  Tensor p = permute(t, {1, 2, 0});
  CHECK(p.shape() == Shape{3, 4, 2});
  CHECK(p.to_vector()[1] == 12.0);

  // Splitting a dim of a non-contiguous tensor can still be a view...
  Tensor v = view(tt, {2, 2, 3, 2});
  CHECK(shares_storage(v, t));
  CHECK(v.to_vector() == tt.to_vector());
  // ...merging across a transposed pair cannot.
  CHECK_THROWS_WITH(view(tt, {24}), Catch::Contains("cannot be viewed") &&
                                        Catch::Contains("[4, 3, 2]") && Catch::Contains("[24]"));
  Tensor r = reshape(tt, {24});  // reshape copies instead
  CHECK_FALSE(shares_storage(r, t));
  CHECK(r.to_vector() == tt.to_vector());
  CHECK(view(t, {-1, 4}).shape() == Shape{6, 4});
}

TEST_CASE("narrow, select, squeeze, unsqueeze, expand", "[tensor][views]") {
  Tensor t = reshape(arange(12), {3, 4});
  Tensor n = narrow(t, 1, 1, 2);
  CHECK(n.shape() == Shape{3, 2});
  CHECK(n.to_vector() == std::vector<double>{1, 2, 5, 6, 9, 10});
  Tensor s = select(t, 0, -1);
  CHECK(s.shape() == Shape{4});
  CHECK(s.to_vector() == std::vector<double>{8, 9, 10, 11});
  Tensor u = unsqueeze(s, 0);
  CHECK(u.shape() == Shape{1, 4});
  CHECK(squeeze(u, 0).shape() == Shape{4});
  Tensor e = expand(u, {3, 4});
  CHECK(e.strides() == Shape{0, 1});
  CHECK(shares_storage(e, t));
  CHECK(e.to_vector()[4] == 8.0);
  Tensor e2 = expand(from_vector(std::vector<double>{1, 2, 3}, {3, 1}), {2, 3, 5});
  CHECK(e2.shape() == Shape{2, 3, 5});
  CHECK(e2.to_vector()[5] == 2.0);
}

TEST_CASE("view errors name the op, shapes and valid range", "[tensor][errors]") {
  Tensor t = zeros({2, 3});
  CHECK_THROWS_WITH(view(t, {4, 2}), Catch::Contains("view") && Catch::Contains("[4, 2]") &&
                                         Catch::Contains("[2, 3]"));
  CHECK_THROWS_WITH(narrow(t, 1, 2, 2), Catch::Contains("narrow") && Catch::Contains("size 3"));
  CHECK_THROWS_WITH(transpose(t, 0, 2), Catch::Contains("transpose") && Catch::Contains("dim 2") &&
                                            Catch::Contains("-2..1"));
  CHECK_THROWS_WITH(squeeze(t, 0), Catch::Contains("squeeze") && Catch::Contains("size 2"));
  CHECK_THROWS_WITH(expand(t, {4, 3}), Catch::Contains("expand") && Catch::Contains("[2, 3]") &&
                                           Catch::Contains("[4, 3]"));
  CHECK_THROWS_WITH(select(t, 0, 5), Catch::Contains("select") && Catch::Contains("index 5"));
  CHECK_THROWS_WITH(chunk(t, 0, 0), Catch::Contains("chunk"));
  CHECK_THROWS_WITH(ones({2}).item(), Catch::Contains("item") && Catch::Contains("[2]"));
  CHECK_THROWS_WITH(t.host_data<double>(), Catch::Contains("f32"));
  CHECK_THROWS_WITH(from_vector(std::vector<double>{1, 2, 3}, {2, 2}),
                    Catch::Contains("3 values") && Catch::Contains("[2, 2]"));
}

TEST_CASE("factories", "[tensor][factory]") {
  CHECK(zeros({2, 2}).to_vector() == std::vector<double>(4, 0.0));
  CHECK(ones({3}, DType::F64).to_vector() == std::vector<double>(3, 1.0));
  CHECK(full({2}, 2.5).to_vector() == std::vector<double>{2.5, 2.5});
  CHECK(arange(0, 1, 0.25).to_vector() == std::vector<double>{0, 0.25, 0.5, 0.75});
  CHECK(arange(4, DType::I32).to_vector() == std::vector<double>{0, 1, 2, 3});
  CHECK(full({}, 3.0).dim() == 0);
  CHECK(full({}, 3.0).item() == 3.0);
  CHECK(zeros({0, 3}).numel() == 0);
}

TEST_CASE("the generator is seeded and reproducible", "[tensor][random]") {
  Generator g1(42), g2(42), g3(43);
  Tensor a = randn({1000}, g1), b = randn({1000}, g2), c = randn({1000}, g3);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(a.to_vector() != c.to_vector());
  // Its first outputs are part of the documented contract (SplitMix64).
  Generator g(0);
  CHECK(g.next_u64() == 0xE220A8397B1DCDAFull);
  // Moments of 10^5 normals and uniforms.
  Generator gm(7);
  std::vector<double> n = randn({100000}, gm, 0, 1, DType::F64).to_vector();
  double mean = 0, var = 0;
  for (double x : n) mean += x;
  mean /= n.size();
  for (double x : n) var += (x - mean) * (x - mean);
  var /= n.size();
  CHECK(std::fabs(mean) < 0.02);
  CHECK(std::fabs(var - 1) < 0.02);
  std::vector<double> u = uniform({100000}, gm, -1, 3, DType::F64).to_vector();
  double umin = 1e9, umax = -1e9, umean = 0;
  for (double x : u) {
    umin = std::min(umin, x);
    umax = std::max(umax, x);
    umean += x / u.size();
  }
  CHECK(umin >= -1);
  CHECK(umax < 3);
  CHECK(std::fabs(umean - 1) < 0.02);
}

TEST_CASE("printing is readable", "[tensor][print]") {
  std::string s = reshape(arange(6), {2, 3}).to_string();
  CHECK(s.find("[[0, 1, 2],") != std::string::npos);
  CHECK(s.find("shape=[2, 3]") != std::string::npos);
  CHECK(s.find("dtype=f32") != std::string::npos);
  std::string big = arange(100).to_string();
  CHECK(big.find("...") != std::string::npos);
  CHECK(big.find("99") != std::string::npos);
}

static float f32_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST_CASE("bf16 conversion rounds to nearest even, exact at the edges", "[tensor][dtype]") {
  CHECK(f32_to_bf16(1.0f) == 0x3F80);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  CHECK(f32_to_bf16(f32_bits(0x3F808000)) == 0x3F80);
  // Halfway with an odd lower neighbour rounds up.
  CHECK(f32_to_bf16(f32_bits(0x3F818000)) == 0x3F82);
  // Just above halfway rounds up.
  CHECK(f32_to_bf16(f32_bits(0x3F808001)) == 0x3F81);
  CHECK(f32_to_bf16(std::numeric_limits<float>::infinity()) == 0x7F80);
  CHECK(f32_to_bf16(-std::numeric_limits<float>::infinity()) == 0xFF80);
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits in the low bits must not round to inf.
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(f32_bits(0x7F800001)))));
  // The largest finite f32 rounds to inf in bf16 (it's above bf16's max + half ulp).
  CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);
  // Subnormals: bf16 has f32's exponent, so f32 subnormals round like normals.
  CHECK(f32_to_bf16(f32_bits(0x00010000)) == 0x0001);
  CHECK(bf16_to_f32(0x0001) == f32_bits(0x00010000));
  CHECK(f32_to_bf16(-0.0f) == 0x8000);
  for (uint32_t h = 0; h < 0x10000; ++h) {  // every finite bf16 round-trips
    float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) REQUIRE(f32_to_bf16(f) == h);
  }
}

TEST_CASE("f16 conversion rounds to nearest even, exact at the edges", "[tensor][dtype]") {
  CHECK(f32_to_f16(1.0f) == 0x3C00);
  CHECK(f32_to_f16(65504.0f) == 0x7BFF);  // max finite
  CHECK(f32_to_f16(65520.0f) == 0x7C00);  // halfway to 65536: ties to even -> inf
  CHECK(f32_to_f16(65519.0f) == 0x7BFF);
  CHECK(f32_to_f16(1e10f) == 0x7C00);
  CHECK(f32_to_f16(-std::numeric_limits<float>::infinity()) == 0xFC00);
  CHECK(std::isnan(f16_to_f32(f32_to_f16(std::numeric_limits<float>::quiet_NaN()))));
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even.
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);
  CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);
  // Subnormals: the smallest is 2^-24; half of it ties to zero, a bit more rounds up.
  CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);
  CHECK(f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001);
  CHECK(f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 units: ties to even (2)
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(f16_to_f32(0x03FF) == std::ldexp(1023.0f, -24));
  CHECK(f32_to_f16(std::ldexp(1023.5f, -24)) == 0x0400);  // rounds up into the normals
  CHECK(f32_to_f16(-0.0f) == 0x8000);
  for (uint32_t h = 0; h < 0x10000; ++h) {  // every f16 round-trips
    float f = f16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) REQUIRE(f32_to_f16(f) == h);
  }
}

TEST_CASE("to() converts between dtypes through storage types", "[tensor][dtype]") {
  Tensor x = from_vector(std::vector<double>{1.0, 1.00390625, -2.5, 65504}, {4});
  Tensor h = to(x, DType::F16);
  CHECK(h.dtype() == DType::F16);
  CHECK(h.nbytes() == 8);
  CHECK(to(h, DType::F32).to_vector() == std::vector<double>{1.0, 1.00390625, -2.5, 65504});
  Tensor b = to(x, DType::BF16);
  CHECK(to(b, DType::F32).to_vector() == std::vector<double>{1.0, 1.0, -2.5, 65536});
  // Ops accept 16-bit storage now (autograd/mixed.h): f32 compute, one rounding.
  Tensor e = exp(b);
  CHECK(e.dtype() == DType::BF16);
  CHECK(to(e, DType::F32).to_vector()[0] == bf16_to_f32(f32_to_bf16(std::exp(1.0f))));
  // bf16 with f16 has no common storage type: still an error that says what to do.
  CHECK_THROWS_WITH(add(b, h), Catch::Contains("bf16") && Catch::Contains("to()"));
}

// ZeRO-3's release/re-gather (parallel/zero/stage3.h): a Storage gives its
// bytes back while views of it live on, and gets them back under the same
// object, where every view reads what is written next.
TEST_CASE("a storage releases its bytes and restores them under the same object",
          "[tensor][storage]") {
  Tensor buffer = full({1000}, 1.0);
  Tensor view = narrow(buffer, 0, 10, 5);  // what the autograd graph would keep
  const size_t before = cpu_bytes_allocated();
  buffer.storage()->release_data();
  CHECK_FALSE(buffer.storage()->has_data());
  CHECK(buffer.storage()->nbytes() == 0);
  CHECK(cpu_bytes_allocated() == before - 4000);
  buffer.storage()->release_data();  // twice: nothing more to give back
  CHECK(cpu_bytes_allocated() == before - 4000);
  buffer.storage()->restore_data();
  CHECK(buffer.storage()->has_data());
  CHECK(buffer.storage()->nbytes() == 4000);
  CHECK(cpu_bytes_allocated() == before);
  fill_(buffer, 3.0);
  CHECK(view.storage() == buffer.storage());
  CHECK(view.to_vector() == std::vector<double>(5, 3.0));
}
