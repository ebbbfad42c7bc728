// Lesson 04 grader: checks causal_softmax_backward against finite differences, gradcheck
// and minispeed's fused attention backward (an attention assembled from matmuls and your
// softmax must produce the same dqkv), then prints and checks the counts of questions 7-9:
// parameters, FLOPs per token and activation memory, measured on the real GPT.
#include <cmath>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "lessons/04_transformer/lesson.h"
#include "lessons/lesson_check.h"
#include "nn/gpt.h"

using namespace ms;
using lesson::fail;
using lesson::pass;

namespace {

using Mat = std::vector<double>;  // (T, T) row-major

Mat random_mat(int64_t T, Generator& gen, double std) {
  Mat m(T * T);
  for (double& v : m) v = std * gen.normal();
  return m;
}
Mat softmax_of(const Mat& S, int64_t T) {
  Mat P(T * T);
  causal_softmax_forward(S.data(), P.data(), T);
  return P;
}

// The reference: central differences of L(S) = Σ dP ∘ causal_softmax(S), in f64.
Mat finite_diff(const Mat& S, const Mat& dP, int64_t T) {
  auto L = [&](const Mat& s) {
    Mat P = softmax_of(s, T);
    double l = 0;
    for (size_t i = 0; i < P.size(); ++i) l += dP[i] * P[i];
    return l;
  };
  const double eps = 1e-6;
  Mat g(T * T);
  for (int64_t i = 0; i < T * T; ++i) {
    Mat hi = S, lo = S;
    hi[i] += eps, lo[i] -= eps;
    g[i] = (L(hi) - L(lo)) / (2 * eps);
  }
  return g;
}

// Candidate wrong answers (the classics), so a failure can say which one it is.
// Each is evaluated on the visible triangle only.
using Wrong = Mat (*)(const Mat&, const Mat&, int64_t);
Mat elementwise(const Mat& P, const Mat& dP, int64_t T) {  // forgot the −<dP, P> term
  Mat d(T * T, 0.0);
  for (int64_t i = 0; i < T * T; ++i) d[i] = P[i] * dP[i];
  return d;
}
Mat no_p_factor(const Mat& P, const Mat& dP, int64_t T) {  // dP − <dP, P>, not times P
  Mat d(T * T, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    double dot = 0;
    for (int64_t s = 0; s <= t; ++s) dot += dP[t * T + s] * P[t * T + s];
    for (int64_t s = 0; s <= t; ++s) d[t * T + s] = dP[t * T + s] - dot;
  }
  return d;
}
Mat unweighted_sum(const Mat& P, const Mat& dP, int64_t T) {  // P ∘ (dP − Σ dP)
  Mat d(T * T, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    double sum = 0;
    for (int64_t s = 0; s <= t; ++s) sum += dP[t * T + s];
    for (int64_t s = 0; s <= t; ++s) d[t * T + s] = P[t * T + s] * (dP[t * T + s] - sum);
  }
  return d;
}
Mat diagonal_only(const Mat& P, const Mat& dP, int64_t T) {  // P(1 − P) ∘ dP, sigmoid-style
  Mat d(T * T, 0.0);
  for (int64_t i = 0; i < T * T; ++i) d[i] = P[i] * (1 - P[i]) * dP[i];
  return d;
}
Mat sign_flipped(const Mat& P, const Mat& dP, int64_t T) {  // P ∘ (<dP, P> − dP)
  Mat d = no_p_factor(P, dP, T);
  for (int64_t i = 0; i < T * T; ++i) d[i] *= -P[i];
  return d;
}
Mat column_sum(const Mat& P, const Mat& dP, int64_t T) {  // the dot product over a column
  Mat d(T * T, 0.0);
  for (int64_t s = 0; s < T; ++s) {
    double dot = 0;
    for (int64_t t = s; t < T; ++t) dot += dP[t * T + s] * P[t * T + s];
    for (int64_t t = s; t < T; ++t) d[t * T + s] = P[t * T + s] * (dP[t * T + s] - dot);
  }
  return d;
}

void check_direct() {
  const int64_t T = 6;
  Generator gen(5);
  Mat S = random_mat(T, gen, 1.5), dP = random_mat(T, gen, 1.0);  // dP dense, like dO·Vᵀ
  S[5 * T + 2] = 12;  // one nearly one-hot row: P ≈ 1 there, the rest ≈ 0
  Mat P = softmax_of(S, T), dS(T * T, NAN);
  causal_softmax_backward(P.data(), dP.data(), dS.data(), T);
  Mat want = finite_diff(S, dP, T);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t s = t + 1; s < T; ++s)
      if (dS[t * T + s] != 0)
        fail(str_cat("dS[", t, "][", s, "] = ", dS[t * T + s], " is above the diagonal (s > t)",
                     std::isnan(dS[t * T + s]) ? " and was never written" : "",
                     ": it must be 0. S[t][s] is masked (-inf), so it cannot change the loss, "
                     "even though dP[t][s] = ",
                     dP[t * T + s], " is not 0"));
  double err = 0;
  for (int64_t i = 0; i < T * T; ++i) err = std::max(err, std::fabs(dS[i] - want[i]));
  std::cout << "  T = 6, dP dense (nonzero above the diagonal too): max |dS - finite diff| = "
            << err << "\n";
  if (err > 1e-7) {
    const std::pair<Wrong, const char*> wrong[] = {
        {elementwise,
         "dS = P ∘ dP: softmax is not elementwise; every P[t][s] depends on the "
         "whole row, so subtract the row's <dP, P> (README question 2)"},
        {no_p_factor, "dS = dP − <dP, P>: multiply by P as well (the Jacobian is diag(P) − P·Pᵀ)"},
        {unweighted_sum, "you subtract Σ dP; subtract Σ dP ∘ P, the dot product with P"},
        {diagonal_only,
         "dS = P(1 − P) ∘ dP keeps only the diagonal of the Jacobian, as for "
         "sigmoid; softmax's also has −P[s]·P[j] off the diagonal"},
        {sign_flipped, "the sign is flipped: P ∘ (dP − <dP, P>), not P ∘ (<dP, P> − dP)"},
        {column_sum, "your dot product runs down a column; it runs along row t"}};
    std::string hint = "derive it from ∂P[s]/∂S[j] = P[s]·(δ[s][j] − P[j]) (README question 2)";
    for (auto& [f, why] : wrong) {
      Mat c = f(P, dP, T);
      double e = 0;
      for (int64_t i = 0; i < T * T; ++i) e = std::max(e, std::fabs(dS[i] - c[i]));
      if (e < 1e-9) hint = why;
    }
    for (int64_t i = 0; i < T * T; ++i)
      if (std::fabs(dS[i] - want[i]) > 1e-7)
        fail(str_cat("dS[", i / T, "][", i % T, "] = ", dS[i], ", expected ", want[i],
                     " (finite differences). Hint: ", hint));
  }
  pass("causal_softmax_backward matches finite differences; 0 above the diagonal");
}

// Your backward as an autograd op over (..., T, T) f64 tensors.
Tensor causal_softmax(const Tensor& S) {
  MS_CHECK(S.dtype() == DType::F64 && S.dim() >= 2 && S.size(-1) == S.size(-2),
           "causal_softmax: need f64 (..., T, T), got ", shape_str(S.shape()));
  const int64_t T = S.size(-1), M = S.numel() / (T * T);
  Tensor Sc = contiguous(detach(S)), P = Tensor::empty(S.shape(), DType::F64);
  for (int64_t m = 0; m < M; ++m)
    causal_softmax_forward(Sc.host_data<double>() + m * T * T, P.host_data<double>() + m * T * T, T);
  if (needs_grad({&S})) {
    record(P, "causal_softmax", {S}, [P = detach(P), T, M](const Tensor& g) {
      Tensor gc = contiguous(g), dS = full(P.shape(), NAN, DType::F64);
      for (int64_t m = 0; m < M; ++m)
        causal_softmax_backward(P.host_data<double>() + m * T * T, gc.host_data<double>() + m * T * T,
                                dS.host_data<double>() + m * T * T, T);
      return std::vector<Tensor>{dS};
    });
  }
  return P;
}

void check_gradcheck() {
  Generator gen(8);
  Tensor S = randn({2, 5, 5}, gen, 0, 1.5, DType::F64).set_requires_grad(true);
  GradcheckResult r =
      gradcheck([](const std::vector<Tensor>& in) { return causal_softmax(in[0]); }, {S});
  std::cout << "  gradcheck of causal_softmax on (2, 5, 5): max |analytic - numeric| = "
            << r.max_abs_error << "\n";
  if (!r.ok) fail(r.report + ". Hint: your backward disagrees with finite differences");
  pass("gradcheck of your backward inside autograd");
}

// Attention assembled from views, matmuls and your causal softmax, as a textbook writes it.
Tensor head_view(const Tensor& qkv, int64_t which, int64_t n_head) {  // -> (B, NH, T, hs)
  int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3;
  Tensor part = narrow(qkv, 2, which * C, C);  // q, k or v: (B, T, C)
  return permute(reshape(part, {B, T, n_head, C / n_head}), {0, 2, 1, 3});
}
Tensor textbook_attention(const Tensor& qkv, int64_t n_head) {
  int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3;
  Tensor q = head_view(qkv, 0, n_head), k = head_view(qkv, 1, n_head),
         v = head_view(qkv, 2, n_head);
  Tensor S = matmul(q, transpose(k, -2, -1)) * (1.0 / std::sqrt(double(C / n_head)));
  Tensor out = matmul(causal_softmax(S), v);  // (B, NH, T, hs)
  return reshape(permute(out, {0, 2, 1, 3}), {B, T, C});
}

void check_attention() {
  const int64_t B = 2, T = 7, C = 12, NH = 3;
  Generator gen(9);
  Tensor qkv = randn({B, T, 3 * C}, gen, 0, 1, DType::F64).set_requires_grad(true);
  Tensor w = randn({B, T, C}, gen, 0, 1, DType::F64);  // L = Σ out ∘ w: a dense dout
  Tensor fused = causal_attention(qkv, NH);
  sum(fused * w).backward();
  Tensor fused_grad = qkv.grad();
  qkv.zero_grad();
  Tensor mine = textbook_attention(qkv, NH);
  sum(mine * w).backward();
  double fwd = 0, bwd = 0;
  std::vector<double> a = fused.to_vector(), b = mine.to_vector();
  for (size_t i = 0; i < a.size(); ++i) fwd = std::max(fwd, std::fabs(a[i] - b[i]));
  a = fused_grad.to_vector(), b = qkv.grad().to_vector();
  for (size_t i = 0; i < a.size(); ++i) bwd = std::max(bwd, std::fabs(a[i] - b[i]));
  std::cout << "  attention B=2 T=7 C=12 NH=3 (f64): max |out - fused out| = " << fwd
            << ", max |dqkv - fused dqkv| = " << bwd << "\n";
  if (fwd > 1e-12)
    fail("the textbook attention's forward differs from causal_attention (checker bug?)");
  if (bwd > 1e-9)
    fail(
        "dqkv through matmuls + your causal softmax differs from the fused kernel "
        "(tensor/cpu/attention.cpp, attention_backward)");
  pass("q·kᵀ/√hs -> your causal softmax -> ·v gives the fused attention's dqkv");

  // gradcheck of the whole assembled attention, tiny.
  Tensor small = randn({1, 4, 3 * 4}, gen, 0, 1, DType::F64).set_requires_grad(true);
  GradcheckResult r = gradcheck(
      [](const std::vector<Tensor>& in) { return textbook_attention(in[0], 2); }, {small});
  if (!r.ok) fail(r.report + " (gradcheck of the assembled attention)");
  pass("gradcheck of the assembled attention (B=1, T=4, C=4, 2 heads)");
}

// ---- facts: counts (README questions 7-9), checked against the real model ----

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n), s;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) s += ',';
    s += digits[i];
  }
  return s;
}

// Question 7: V·C (wte, also the tied LM head) + block·C (wpe) + L·(12C² + 13C) + 2C (ln_f).
int64_t param_formula(const GPTConfig& c) {
  int64_t C = c.n_embd;
  return c.vocab_size * C + c.block_size * C + c.n_layer * (12 * C * C + 13 * C) + 2 * C;
}

// Question 8: forward FLOPs per token at context T, attention counted dense (PaLM's count; the
// causal blocking in attention.cpp skips the tiles above the diagonal, so it runs less):
// 2 per multiply-add over every matmul weight (12LC² in the blocks, VC in the head) + 4LTC.
int64_t flops_formula(const GPTConfig& c, int64_t T) {
  int64_t C = c.n_embd, L = c.n_layer;
  return 2 * (12 * L * C * C + c.vocab_size * C) + 4 * L * T * C;
}

// The same count read off the model: every 2-D Linear weight (in, out) costs 2·in·out per
// token; the tied head 2·V·C; wpe is a lookup (0); attention q·kᵀ and P·v 2·T·hs per head each.
int64_t flops_enumerated(GPT& gpt, int64_t T) {
  const GPTConfig& c = gpt.config();
  int64_t f = 2 * c.vocab_size * c.n_embd;  // logits = x · wteᵀ
  for (auto& [name, p] : gpt.named_parameters())
    if (p.dim() == 2 && name.rfind("h.", 0) == 0) f += 2 * p.size(0) * p.size(1);
  return f + c.n_layer * c.n_head * 2 * (2 * T * (c.n_embd / c.n_head));
}

void check_counts() {
  std::cout
      << "facts:\n  parameters = V·C + block·C + L·(12C² + 13C) + 2C   (LM head tied to wte)\n";
  const GPTConfig configs[] = {{256, 128, 4, 4, 128, 0},
                               {65, 32, 2, 2, 48, 0},
                               {1000, 64, 3, 3, 96, 0},
                               {50257, 16, 1, 2, 8, 0}};
  for (const GPTConfig& c : configs) {
    GPT gpt(c, 1);
    int64_t got = gpt.num_parameters(), want = param_formula(c);
    std::cout << "    " << c.describe() << ": num_parameters() " << with_commas(got) << ", formula "
              << with_commas(want)
              << "\n      forward FLOPs/token at T = block: counted from its weight shapes "
                 "(+ 4·L·T·C attention) "
              << with_commas(flops_enumerated(gpt, c.block_size)) << ", formula "
              << with_commas(flops_formula(c, c.block_size)) << "\n";
    if (got != want) fail("library: GPT::num_parameters() disagrees with the parameter formula");
    for (int64_t T : {int64_t(1), c.block_size})
      if (flops_enumerated(gpt, T) != flops_formula(c, T))
        fail(str_cat("library: FLOP count from the model's weights ", flops_enumerated(gpt, T),
                     " != formula ", flops_formula(c, T), " at T = ", T));
  }
  pass("the FLOP formula equals the count from the weight shapes of 4 models, at T = 1 and "
       "T = block");
  std::cout << "  GPT-2 family by the formula (V = 50257, block = 1024):\n";
  const int64_t family[][3] = {{12, 12, 768}, {24, 16, 1024}, {36, 20, 1280}, {48, 25, 1600}};
  for (auto [L, H, C] : family) {
    GPTConfig c{50257, 1024, L, H, C, 0};
    std::cout << "    L=" << L << " C=" << std::setw(4) << C << ": " << std::setw(13)
              << with_commas(param_formula(c)) << " params\n";
  }
  pass("the parameter formula equals num_parameters() for 4 configs");

  GPTConfig g2{50257, 1024, 12, 12, 768, 0};
  const int64_t T = 1024;
  double fwd = double(flops_formula(g2, T)), n = double(param_formula(g2));
  double attn = 4.0 * 12 * T * 768;
  std::cout << "  FLOPs/token, GPT-2 small at T = 1024 (formula, attention dense): forward "
               "2·N_matmul + 4·L·T·C = "
            << fwd / 1e6 << " M (attention " << attn / 1e6 << " M); training 3x = " << 3 * fwd / 1e6
            << " M; the 6N rule says " << 6 * n / 1e6 << " M\n";
}

// Question 9: what one block keeps alive for backward, measured with the allocator's counter.
// Backward needs 16·B·T·C + NH·B·T values per layer, the layer input x included (Korthikanti
// et al. 2022 without dropout, with our blocked attention's per-row log-sum-exp, NH·B·T, in
// place of the probabilities P, NH·B·T²: tensor/cpu/flash_attention.h). The bytes a forward
// leaves allocated are that, minus x (it was allocated before), plus the block's output y
// (B·T·C: the next layer's input, which that layer counts) and the two LayerNorms' per-row mean and 1/std (2 × 2·B·T). Exact, not approximate:
// a change to what the graph saves shows up here.
void check_activation_memory() {
  const int64_t B = 2, C = 64, NH = 4;
  GPTConfig cfg{256, 256, 1, NH, C, 0};
  Generator gen(3);
  Block block(cfg, gen);
  auto kib = [](double bytes) { return str_cat(bytes / 1024, " KiB"); };
  std::cout << "  activation memory of one block (f32, B = 2, C = 64, NH = 4), measured with "
               "cpu_bytes_allocated():\n";
  for (int64_t T : {int64_t(32), int64_t(128)}) {
    Tensor x = randn({B, T, C}, gen);
    size_t before = cpu_bytes_allocated();
    size_t kept_nograd;
    {
      NoGradGuard no_grad;
      Tensor y = block.forward(x);
      kept_nograd = cpu_bytes_allocated() - before;
    }
    Tensor y = block.forward(x);
    const double kept = double(cpu_bytes_allocated() - before);
    const double need = 4.0 * (16 * B * T * C + NH * B * T);  // bytes, x included
    const double input = 4.0 * B * T * C, output = input, ln_stats = 4.0 * 2 * 2 * B * T;
    std::cout << "    T=" << std::setw(3) << T << ": the forward kept " << kib(kept)
              << "; + the input x " << kib(input) << " = " << kib(kept + input) << "\n"
              << "           = formula 16·B·T·C + NH·B·T " << kib(need) << " + the output y "
              << kib(output) << " + LayerNorm mean and 1/std " << kib(ln_stats) << "\n"
              << "           under no_grad the forward kept " << kib(double(kept_nograd))
              << " (the output y only)\n";
    if (kept + input != need + output + ln_stats)
      fail(str_cat("library: a block's forward kept ", kept + input - need - output - ln_stats,
                   " bytes more than 16·B·T·C + NH·B·T values + its output + the LayerNorm "
                   "statistics (README question 9)"));
    if (double(kept_nograd) != output) fail("library: a no_grad forward kept more than its output");
  }
  pass(
      "a block keeps exactly 16·B·T·C + NH·B·T values for backward (+ its output and the "
      "LayerNorm statistics); no_grad keeps only the output");
}

}  // namespace

int main() {
  return lesson::run_checks([] {
    check_direct();
    check_gradcheck();
    check_attention();
    check_counts();
    check_activation_memory();
  });
}
