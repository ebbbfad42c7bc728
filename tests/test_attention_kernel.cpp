// The blocked attention kernel (tensor/cpu/flash_attention.h) against its
// unfused twin that stores P (tensor/cpu/attention.h): outputs, the saved
// log-sum-exp against a direct sum, and dq|dk|dv, in f32 (every micro-kernel
// this CPU runs: the packed panels' layout differs by ISA) and f64, with and
// without attention dropout. T covers 1, odd lengths, a tile boundary (48)
// and more keys than one block (256), where the online rescaling runs.
#include <cmath>
#include <random>
#include <vector>

#include "catch_compat.h"
#include "tensor/cpu/attention.h"
#include "tensor/cpu/flash_attention.h"
#include "tensor/cpu/gemm.h"

namespace {

template <typename T>
std::vector<T> random_vec(size_t n, std::mt19937& rng, double sd) {
  std::normal_distribution<double> dist(0.0, sd);
  std::vector<T> v(n);
  for (T& x : v) x = T(dist(rng));
  return v;
}

template <typename T>
double max_rel_err(const std::vector<T>& got, const std::vector<T>& want) {
  double scale = 1e-30, err = 0;
  for (size_t i = 0; i < want.size(); ++i) scale = std::max(scale, std::abs(double(want[i])));
  for (size_t i = 0; i < want.size(); ++i)
    err = std::max(err, std::abs(double(got[i]) - double(want[i])));
  return err / scale;
}

template <typename T>
void check_against_reference(int64_t B, int64_t Tlen, int64_t NH, int64_t hs, double p_drop,
                             double tol, std::mt19937& rng) {
  const int64_t C = NH * hs;
  // sd 2 scores spread the softmax so it is not close to uniform.
  std::vector<T> qkv = random_vec<T>(size_t(B * Tlen * 3 * C), rng, 1.0);
  std::vector<T> dout = random_vec<T>(size_t(B * Tlen * C), rng, 1.0);
  std::vector<uint8_t> keep;
  const T keep_scale = T(1.0 / (1.0 - p_drop));
  if (p_drop > 0) {
    std::bernoulli_distribution kept(1.0 - p_drop);
    keep.resize(size_t(B * NH * Tlen * Tlen));
    for (uint8_t& k : keep) k = kept(rng) ? 1 : 0;
  }
  const uint8_t* kp = keep.empty() ? nullptr : keep.data();

  std::vector<T> out_ref(size_t(B * Tlen * C)), att(size_t(B * NH * Tlen * Tlen));
  ms::cpu::attention_forward<T>(out_ref.data(), att.data(), qkv.data(), B, Tlen, C, NH, kp,
                                keep_scale);
  std::vector<T> out(out_ref.size(), T(7)), lse(size_t(B * NH * Tlen), T(7));
  ms::cpu::flash_attention_forward<T>(out.data(), lse.data(), qkv.data(), B, Tlen, C, NH, kp,
                                      keep_scale);
  CHECK(max_rel_err(out, out_ref) < tol);

  // lse_i = log Σ_{j≤i} exp(q_i·k_j/√hs), summed directly in double.
  std::vector<T> lse_ref(lse.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int64_t i = 0; i < Tlen; ++i) {
        std::vector<double> s(size_t(i + 1));
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          double d = 0;
          for (int64_t c = 0; c < hs; ++c)
            d += double(qkv[(b * Tlen + i) * 3 * C + h * hs + c]) *
                 double(qkv[(b * Tlen + j) * 3 * C + C + h * hs + c]);
          s[size_t(j)] = d / std::sqrt(double(hs));
          mx = std::max(mx, s[size_t(j)]);
        }
        double sum = 0;
        for (double x : s) sum += std::exp(x - mx);
        lse_ref[size_t((b * NH + h) * Tlen + i)] = T(mx + std::log(sum));
      }
  CHECK(max_rel_err(lse, lse_ref) < tol);

  std::vector<T> dqkv_ref(qkv.size()), scratch(att.size()), dqkv(qkv.size(), T(7));
  ms::cpu::attention_backward<T>(dqkv_ref.data(), scratch.data(), dout.data(), qkv.data(),
                                 att.data(), B, Tlen, C, NH, kp, keep_scale);
  ms::cpu::flash_attention_backward<T>(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(),
                                       B, Tlen, C, NH, kp, keep_scale);
  CHECK(max_rel_err(dqkv, dqkv_ref) < tol);
}

struct Shape {
  int64_t B, T, NH, hs;
};
const Shape kShapes[] = {{1, 1, 1, 4},   {2, 5, 3, 8},   {1, 47, 2, 16},
                         {2, 49, 3, 12}, {1, 97, 2, 64}, {1, 300, 2, 8}};

}  // namespace

TEST_CASE("flash attention: f64 forward, lse and backward equal the unfused kernel",
          "[attention][flash]") {
  std::mt19937 rng(11);
  for (const Shape& s : kShapes)
    for (double p : {0.0, 0.3}) {
      INFO("B " << s.B << " T " << s.T << " NH " << s.NH << " hs " << s.hs << " dropout " << p);
      check_against_reference<double>(s.B, s.T, s.NH, s.hs, p, 1e-12, rng);
    }
}

TEST_CASE("flash attention: f32 on every micro-kernel equals the unfused kernel",
          "[attention][flash]") {
  for (const char* isa : {"avx512", "avx2", "scalar"}) {
    if (!ms::cpu::gemm_f32_force_isa(isa)) continue;
    std::mt19937 rng(12);
    for (const Shape& s : kShapes)
      for (double p : {0.0, 0.3}) {
        INFO(isa << ": B " << s.B << " T " << s.T << " NH " << s.NH << " hs " << s.hs << " dropout "
                 << p);
        check_against_reference<float>(s.B, s.T, s.NH, s.hs, p, 2e-5, rng);
      }
  }
  REQUIRE(ms::cpu::gemm_f32_force_isa("auto"));
}
