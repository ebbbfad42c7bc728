// Lesson 02 grader: checks my_layernorm's forward and Node, the shapes its backward returns,
// then gradcheck (f64 central differences) on all three inputs. When gradcheck fails it names
// the likely bug: it calls the backward on a fixed case and compares each gradient with the
// right one and with the common wrong ones, computed here in double:
//   dx:      the -mean(dxhat) term missing, the -xhat·mean(dxhat·xhat) term missing, both
//            missing (statistics treated as constants), no 1/σ factor, the wrong sign, g used
//            where dxhat = g·weight belongs, sums where means belong
//   dweight: xhat missing;  dweight and dbias swapped;  dbias a mean over rows, not a sum
// Then the op runs inside a small training loss, and the engine facts the README asks about.
#include <cmath>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "lessons/02_autograd/lesson.h"
#include "lessons/lesson_check.h"
#include "tensor/random.h"

using namespace ms;
using lesson::fail;
using lesson::pass;

namespace {

using Vec = std::vector<double>;

bool close(double got, double want, double tol) {
  return std::fabs(got - want) <= tol * (1 + std::fabs(want));
}
bool all_close(const Vec& got, const Vec& want, double tol = 1e-7) {
  if (got.size() != want.size()) return false;
  for (size_t k = 0; k < got.size(); ++k)
    if (!close(got[k], want[k], tol)) return false;
  return true;
}
Tensor tensor(const Vec& v, Shape shape) {
  return from_vector(v, std::move(shape), DType::F64);
}

// The fixed case the diagnosis runs on. Rows of different scales (so 1/σ is not near 1), a
// weight far from 1 with negative entries (so forgetting it shows), a non-uniform g.
constexpr int64_t kN = 4, kC = 6;
const Vec kX = {0.3, -1.2, 2.5, 0.7, -0.4, 1.1,      4.0, -3.5, 6.2, 0.5, -7.1, 2.2,
                0.05, 0.11, -0.07, 0.02, 0.09, -0.13, -2.0, 1.5, -0.5, 3.3, 0.8, -1.9};
const Vec kW = {0.5, -1.3, 2.0, 0.8, 1.7, -0.6}, kB = {0.1, -0.2, 0.3, 0.0, 0.25, -0.15};
const Vec kG = {0.3, -1.2, 0.7, 2.5, -0.4, 1.9,  -0.8, 0.45, 1.3, -2.2, 0.6, 0.15,
                1.1, -0.35, 0.9, 0.2, -1.7, 0.55, 0.65, 1.4, -0.9, -0.25, 2.1, -1.05};
constexpr double kEps = 1e-5;

// Everything the right backward and the common wrong ones are made of, in double.
struct Reference {
  Vec y, xhat, rstd, dxhat, m1, m2;  // m1 = mean(dxhat), m2 = mean(dxhat·xhat), per row
  Vec dx, dw, db;
};
Reference reference(const Vec& x, const Vec& w, const Vec& b, const Vec& g, int64_t N, int64_t C) {
  Reference r;
  r.y.resize(size_t(N * C)), r.xhat.resize(size_t(N * C)), r.dxhat.resize(size_t(N * C));
  r.dx.resize(size_t(N * C)), r.dw.assign(size_t(C), 0), r.db.assign(size_t(C), 0);
  for (int64_t i = 0; i < N; ++i) {
    double mean = 0, var = 0, m1 = 0, m2 = 0;
    for (int64_t j = 0; j < C; ++j) mean += x[size_t(i * C + j)] / double(C);
    for (int64_t j = 0; j < C; ++j) var += std::pow(x[size_t(i * C + j)] - mean, 2) / double(C);
    const double rs = 1 / std::sqrt(var + kEps);
    r.rstd.push_back(rs);
    for (int64_t j = 0; j < C; ++j) {
      const size_t k = size_t(i * C + j);
      r.xhat[k] = (x[k] - mean) * rs;
      r.y[k] = r.xhat[k] * w[size_t(j)] + b[size_t(j)];
      r.dxhat[k] = g[k] * w[size_t(j)];
      m1 += r.dxhat[k] / double(C);
      m2 += r.dxhat[k] * r.xhat[k] / double(C);
      r.dw[size_t(j)] += g[k] * r.xhat[k];
      r.db[size_t(j)] += g[k];
    }
    r.m1.push_back(m1), r.m2.push_back(m2);
    for (int64_t j = 0; j < C; ++j) {
      const size_t k = size_t(i * C + j);
      r.dx[k] = rs * (r.dxhat[k] - m1 - r.xhat[k] * m2);
    }
  }
  return r;
}

// dx built per element from (row i, element k): the right formula and each bug's.
Vec dx_from(const Reference& r, const std::function<double(int64_t i, size_t k)>& f) {
  Vec out(r.dx.size());
  for (int64_t i = 0; i < kN; ++i)
    for (int64_t j = 0; j < kC; ++j) out[size_t(i * kC + j)] = f(i, size_t(i * kC + j));
  return out;
}

std::string where(const Vec& got, const Vec& want, const char* name, int64_t cols) {
  size_t k = 0;
  while (k < got.size() && close(got[k], want[k], 1e-7)) ++k;
  if (k == got.size()) return "";
  return cols > 1 ? str_cat("\n  ", name, "[", k / size_t(cols), "][", k % size_t(cols), "]: got ",
                            got[k], ", expected ", want[k])
                  : str_cat("\n  ", name, "[", k, "]: got ", got[k], ", expected ", want[k]);
}

// The learner's three gradients on the fixed case, called as the engine would.
std::vector<Vec> learner_gradients() {
  Tensor x = tensor(kX, {kN, kC}).set_requires_grad(true);
  Tensor w = tensor(kW, {kC}).set_requires_grad(true), b = tensor(kB, {kC}).set_requires_grad(true);
  Tensor y = my_layernorm(x, w, b, kEps);
  std::vector<Tensor> grads;
  {
    NoGradGuard no_grad;  // the engine runs every backward without recording
    grads = y.grad_fn()->backward(tensor(kG, {kN, kC}));
  }
  return {grads[0].to_vector(), grads[1].to_vector(), grads[2].to_vector()};
}

// "" when all three gradients are right on the fixed case; else the likely bug, from whole
// tensors at once: a bug is named only if it explains every element.
std::string diagnose() {
  const std::vector<Vec> got = learner_gradients();
  const Vec &dx = got[0], &dw = got[1], &db = got[2];
  const Reference r = reference(kX, kW, kB, kG, kN, kC);
  std::string out;
  // dbias and dweight first: they are one line each, and a swap shows in both.
  Vec sum_g(size_t(kC), 0), mean_g(size_t(kC), 0), sum_gx(size_t(kC), 0);
  for (int64_t i = 0; i < kN; ++i)
    for (int64_t j = 0; j < kC; ++j) {
      sum_g[size_t(j)] += kG[size_t(i * kC + j)];
      mean_g[size_t(j)] += kG[size_t(i * kC + j)] / double(kN);
      sum_gx[size_t(j)] += kG[size_t(i * kC + j)] * kX[size_t(i * kC + j)];
    }
  if (!all_close(db, r.db) || !all_close(dw, r.dw)) {
    if (all_close(db, r.dw) && all_close(dw, r.db))
      out += "\n  dweight and dbias are swapped: return {dx, dweight, dbias} in the order of the "
             "inputs {x, weight, bias}; dbias = Σ_rows g, dweight = Σ_rows g·xhat";
    else {
      if (all_close(dw, sum_g))
        out += "\n  dweight is missing xhat: y = xhat·weight + bias, so each row contributes "
               "g·xhat to dweight, not g";
      else if (all_close(dw, sum_gx))
        out += "\n  dweight uses x where the normalized xhat belongs: y = xhat·weight + bias";
      else if (!all_close(dw, r.dw))
        out += str_cat("\n  dweight is wrong: each row contributes g·xhat, summed over the rows",
                       where(dw, r.dw, "dweight", 1));
      if (all_close(db, mean_g))
        out += "\n  dbias is the mean over rows of g: bias is added to every row, so its gradient "
               "is the SUM over rows (chain rule through the broadcast)";
      else if (!all_close(db, r.db))
        out += str_cat("\n  dbias is wrong: bias is added to every row, so dbias = Σ_rows g",
                       where(db, r.db, "dbias", 1));
    }
  }
  if (!all_close(dx, r.dx)) {
    const double C = double(kC);
    auto is = [&](const std::function<double(int64_t, size_t)>& f) {
      return all_close(dx, dx_from(r, f));
    };
    const auto& xh = r.xhat;
    const auto& dh = r.dxhat;
    // Each variant: the right formula with one piece wrong.
    if (is([&](int64_t i, size_t k) { return r.rstd[i] * (dh[k] - xh[k] * r.m2[i]); }))
      out += "\n  dx is missing the -mean(dxhat) term: the path through the row mean. Every x "
             "of the row moves the mean, so d mean / dx = 1/C feeds -mean(dxhat) back to each x";
    else if (is([&](int64_t i, size_t k) { return r.rstd[i] * (dh[k] - r.m1[i]); }))
      out += "\n  dx is missing the -xhat·mean(dxhat·xhat) term: the path through the row "
             "variance. rstd = (var + eps)^-1/2 depends on every x of the row too";
    else if (is([&](int64_t i, size_t k) { return r.rstd[i] * dh[k]; }))
      out += "\n  dx treats the row's mean and variance as constants: you return rstd·dxhat, only "
             "the direct path. Both statistics depend on every x of the row: add the paths "
             "through the mean and through the variance";
    else if (is([&](int64_t i, size_t k) { return dh[k] - r.m1[i] - xh[k] * r.m2[i]; }))
      out += "\n  dx is missing the 1/σ factor (rstd): xhat = (x - mean)·rstd, so every path "
             "into x is multiplied by rstd";
    else if (is([&](int64_t, size_t k) { return -r.dx[k]; }))
      out += "\n  dx has the wrong sign: you return -(the right dx); the mean and variance terms "
             "are subtracted from dxhat, not dxhat from them";
    else if (is([&](int64_t i, size_t k) {
               double gm = 0, gxm = 0;  // the row means with g in place of dxhat
               for (int64_t j = 0; j < kC; ++j) {
                 const size_t kj = size_t(i * kC + j);
                 gm += kG[kj] / C, gxm += kG[kj] * xh[kj] / C;
               }
               return r.rstd[size_t(i)] * (kG[k] - gm - xh[k] * gxm);
             }))
      out += "\n  dx is missing the weight: the gradient reaching xhat is dxhat = g·weight "
             "(y = xhat·weight + bias), not g";
    else if (is([&](int64_t i, size_t k) {
               return r.rstd[i] * (dh[k] - C * r.m1[i] - xh[k] * C * r.m2[i]);
             }))
      out += "\n  dx uses sums where the means belong (C times too large a correction): the mean "
             "and variance are averages over C values, so their terms carry a 1/C";
    else
      out += str_cat("\n  dx matches none of the common bugs: rederive it (README question 2): the "
                     "direct path through xhat, the path through the row mean, and the path "
                     "through the row variance, all times rstd",
                     where(dx, r.dx, "dx", kC));
  }
  return out;
}

void check_forward_and_node() {
  const Reference r = reference(kX, kW, kB, kG, kN, kC);
  Tensor x = tensor(kX, {kN, kC}), w = tensor(kW, {kC}), b = tensor(kB, {kC});
  const Vec y = my_layernorm(x, w, b, kEps).to_vector();
  if (!all_close(y, r.y, 1e-9))
    fail(str_cat("forward: my_layernorm differs from (x - mean)/sqrt(var + eps)·weight + bias",
                 where(y, r.y, "y", kC)));
  if (my_layernorm(x, w, b, kEps).grad_fn())
    fail("my_layernorm recorded a Node although no input needs grad");
  w.set_requires_grad(true);
  {
    NoGradGuard no_grad;
    if (my_layernorm(x, w, b, kEps).grad_fn()) fail("my_layernorm recorded a Node inside a NoGradGuard");
  }
  x.set_requires_grad(true);
  Tensor out = my_layernorm(x, w, b, kEps);
  const auto& node = out.grad_fn();
  if (!node || node->op != "my_layernorm" || node->next.size() != 3 ||
      node->next[0].leaf != x.impl_ptr() || node->next[1].leaf != w.impl_ptr())
    fail("y = my_layernorm(x, weight, bias) should record one Node \"my_layernorm\" whose inputs "
         "are x, weight, bias");
  pass("forward matches (x - mean)/sqrt(var + eps)·weight + bias; one Node is recorded, none "
       "under no_grad");

  std::vector<Tensor> grads;
  {
    NoGradGuard no_grad;
    grads = node->backward(tensor(kG, {kN, kC}));
  }
  const char* names[] = {"dx", "dweight", "dbias"};
  const Shape want[] = {{kN, kC}, {kC}, {kC}};
  if (grads.size() != 3)
    fail(str_cat("backward must return 3 gradients, one per input {x, weight, bias}, got ",
                 grads.size()));
  for (int n = 0; n < 3; ++n) {
    if (!grads[size_t(n)].defined()) fail(str_cat("backward returned no ", names[n]));
    if (grads[size_t(n)].shape() != want[n])
      fail(str_cat("backward: ", names[n], " has shape ", shape_str(grads[size_t(n)].shape()),
                   ", expected ", shape_str(want[n]),
                   grads[size_t(n)].numel() == shape_numel(want[n])
                       ? " — the right number of values in the wrong shape (a keepdim=true "
                         "reduction?): reshape it, or reduce without keepdim"
                   : n > 0 ? " — weight and bias are shared by all N rows: sum over the rows, "
                             "ms::sum(t, {0})"
                           : " — like x"));
  }
  pass("backward returns {dx (N, C), dweight (C), dbias (C)}");
}

void check_gradcheck() {
  Generator gen(7);
  Tensor x = randn({3, 5}, gen, 0, 2, DType::F64).set_requires_grad(true);
  Tensor w = randn({5}, gen, 1, 0.5, DType::F64).set_requires_grad(true);
  Tensor b = randn({5}, gen, 0, 0.5, DType::F64).set_requires_grad(true);
  GradcheckResult r = gradcheck(
      [](const std::vector<Tensor>& in) { return my_layernorm(in[0], in[1], in[2], kEps); },
      {x, w, b});
  std::cout << "  gradcheck (f64, central differences) on x (3, 5), weight and bias: max "
               "|analytic - numeric| = "
            << r.max_abs_error << "\n";
  const std::string why = diagnose();
  if (!r.ok) fail(str_cat(r.report, ". Likely bug, from your gradients on a fixed 4x6 case:", why));
  if (!why.empty()) fail(str_cat("gradcheck passed, but on a fixed 4x6 case:", why));
  pass("gradcheck on x, weight and bias; dx, dweight and dbias equal the derivation on a 4x6 case");
}

// L = sum((layernorm(x; w, b) - t)^2) + 0.5 * sum(w*w): w is used twice, so its gradient is the
// sum of two paths.
const Vec kX3 = {0.5, -1.0, 2.0, 1.5, -0.3, 0.8, 1.2, -2.1, 3.0, 0.1, -0.6, 0.9};
const Vec kT3 = {1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 1};
const Vec kW3 = {0.7, -0.4, 1.1, 0.9}, kB3 = {-0.2, 0.1, 0.0, 0.3};
Tensor loss(const Tensor& w, const Tensor& b, DType dtype = DType::F64) {
  Tensor d = my_layernorm(to(tensor(kX3, {3, 4}), dtype), w, b, kEps) - to(tensor(kT3, {3, 4}), dtype);
  return sum(d * d) + sum(w * w) * 0.5;
}
double loss_at(Vec w, Vec b, DType dtype = DType::F64) {
  NoGradGuard no_grad;
  return loss(to(tensor(w, {4}), dtype), to(tensor(b, {4}), dtype), dtype).item();
}

void check_training_graph() {
  const double eps = 1e-6;
  const Reference r = reference(kX3, kW3, kB3, Vec(12, 0), 3, 4);
  Vec hand_w = kW3, hand_b(4, 0);  // the weight-decay path contributes w to dL/dw
  for (size_t k = 0; k < 12; ++k) {
    const double d = 2 * (r.y[k] - kT3[k]);
    hand_w[k % 4] += d * r.xhat[k];
    hand_b[k % 4] += d;
  }
  Tensor w = tensor(kW3, {4}).set_requires_grad(true), b = tensor(kB3, {4}).set_requires_grad(true);
  int hook_calls = 0;
  w.register_grad_hook([&](Tensor&) { ++hook_calls; });
  Tensor L = loss(w, b);
  L.backward(Tensor(), /*retain_graph=*/true);
  const Vec auto_w = w.grad().to_vector(), auto_b = b.grad().to_vector();
  Vec fd_w(4), fd_b(4);
  for (size_t j = 0; j < 4; ++j) {
    Vec wp = kW3, wm = kW3, bp = kB3, bm = kB3;
    wp[j] += eps, wm[j] -= eps, bp[j] += eps, bm[j] -= eps;
    fd_w[j] = (loss_at(wp, kB3) - loss_at(wm, kB3)) / (2 * eps);
    fd_b[j] = (loss_at(kW3, bp) - loss_at(kW3, bm)) / (2 * eps);
  }
  std::cout << "  L = sum((layernorm(x; w, b) - t)^2) + 0.5*sum(w^2), x (3, 4)\n"
            << "  dL/dw[0]: autograd " << auto_w[0] << ", by hand " << hand_w[0] << ", finite diff "
            << fd_w[0] << "\n  dL/db[0]: autograd " << auto_b[0] << ", by hand " << hand_b[0]
            << ", finite diff " << fd_b[0] << "\n";
  if (!all_close(auto_w, hand_w, 1e-9) || !all_close(auto_b, hand_b, 1e-9) ||
      !all_close(fd_w, hand_w, 1e-6) || !all_close(fd_b, hand_b, 1e-6))
    fail("the gradients of L disagree (see the numbers above)");
  if (hook_calls != 1) fail(str_cat("w's gradient hook fired ", hook_calls, " times, expected 1"));
  pass("w.grad and b.grad match the hand derivation and finite differences (all 4 elements)");

  // Facts (README): accumulation, retain_graph, and why gradcheck uses f64.
  L.backward();  // allowed once more: the first call retained the graph
  std::cout << "facts:\n  backward() again without zero_grad(): w.grad[0] = " << w.grad().to_vector()[0]
            << " (2x: gradients accumulate)\n";
  try {
    L.backward();
    std::cout << "  a third backward() on the freed graph did not throw?!\n";
  } catch (const Error& e) {
    std::cout << "  a third backward() on the freed graph throws: " << e.what() << "\n";
  }
  Vec wp = kW3, wm = kW3;
  wp[0] += eps, wm[0] -= eps;
  const double fd32 = (loss_at(wp, kB3, DType::F32) - loss_at(wm, kB3, DType::F32)) / (2 * eps);
  std::cout << "  the same finite difference in f32: " << fd32 << " (error "
            << std::fabs(fd32 - hand_w[0]) << "): rounding noise / eps swamps it, hence f64\n";
}

}  // namespace

int main() {
  return lesson::run_checks([] {
    check_forward_and_node();
    check_gradcheck();
    check_training_graph();
  });
}
