// Lesson 02 grader: checks my_sigmoid's backward (called directly, by gradcheck, and
// inside a small training loss) and prints the engine facts the README asks about.
#include <cmath>
#include <iostream>
#include <string>

#include "autograd/gradcheck.h"
#include "lessons/02_autograd/lesson.h"
#include "lessons/lesson_check.h"

using namespace ms;
using lesson::fail;
using lesson::pass;

namespace {

bool close(double got, double want, double tol) {
  return std::fabs(got - want) <= tol * (1 + std::fabs(want));
}
double sigmoid(double v) {
  return 1 / (1 + std::exp(-v));
}
Tensor vec(const std::vector<double>& v, DType dtype = DType::F64) {
  return from_vector(v, {static_cast<int64_t>(v.size())}, dtype);
}

// Names the bug behind a wrong backward from all seven elements at once: a bug is named
// only if it explains every element, so one coincidence cannot name the wrong one.
std::string diagnose_backward(const std::vector<double>& got, const std::vector<double>& g,
                              const std::vector<double>& s, const std::vector<double>& want) {
  auto all = [&](auto f) {
    for (size_t k = 0; k < got.size(); ++k)
      if (!close(got[k], f(g[k], s[k]), 1e-5)) return false;
    return true;
  };
  if (all([](double, double sk) { return sk * (1 - sk); }))
    return "g is missing: you return ds/dx = s*(1-s); the chain rule multiplies it by g = dL/ds";
  if (all([](double gk, double) { return gk; }))
    return "you return g unchanged (the identity's backward): multiply it by ds/dx = s*(1-s)";
  if (all([](double gk, double sk) { return gk * sk; }))
    return "the factor (1-s) is missing: you return g*s, but ds/dx = s*(1-s)";
  if (all([](double gk, double sk) { return gk * (1 - sk); }))
    return "the factor s is missing: you return g*(1-s), but ds/dx = s*(1-s)";
  double num = 0, den = 0;  // least-squares c in got = c * want
  for (size_t k = 0; k < got.size(); ++k) num += got[k] * want[k], den += want[k] * want[k];
  double c = num / den;
  if (std::fabs(c - 1) > 1e-3 &&
      all([&](double gk, double sk) { return c * gk * sk * (1 - sk); })) {
    if (close(c, -1, 1e-4))
      return "wrong sign: you return -g*s*(1-s) (is it s*(s-1)?); sigmoid is increasing, so "
             "ds/dx = s*(1-s) > 0";
    if (close(c, 2, 1e-4))
      return "twice the right gradient: you return 2*g*s*(1-s), a stray factor 2 (a term added "
             "twice, or the 2 of a square's derivative?)";
    return str_cat(c, " times the right gradient: a stray constant factor; dL/dx = g*s*(1-s)");
  }
  return "not g*s*(1-s): differentiate 1/(1+e^-x), write it in terms of s, then multiply by g "
         "(README question 2)";
}

void check_forward_and_node() {
  std::vector<double> xs = {-6, -2, -0.5, 0, 0.5, 2, 6};
  Tensor x = vec(xs, DType::F32);
  std::vector<double> s = my_sigmoid(x).to_vector();
  for (size_t k = 0; k < xs.size(); ++k)
    if (!close(s[k], sigmoid(xs[k]), 1e-6))
      fail(str_cat("forward: my_sigmoid(", xs[k], ") = ", s[k], ", expected ", sigmoid(xs[k])));
  if (my_sigmoid(x).grad_fn()) fail("my_sigmoid recorded a Node although x needs no grad");
  x.set_requires_grad(true);
  {
    NoGradGuard no_grad;
    if (my_sigmoid(x).grad_fn()) fail("my_sigmoid recorded a Node inside a NoGradGuard");
  }
  Tensor y = my_sigmoid(x);
  const auto& node = y.grad_fn();
  if (!node || node->op != "my_sigmoid" || node->next.size() != 1 ||
      node->next[0].leaf != x.impl_ptr())
    fail("y = my_sigmoid(x) should record one Node \"my_sigmoid\" whose only input is x");
  pass("forward matches 1/(1+e^-x); one Node is recorded, and none under no_grad");

  // Call the learner's backward directly, as the engine would. g is non-uniform, has
  // negative entries, and no entry is 0.5, 1 or 2, so no two bugs below give the same
  // numbers (where g = 0.5, twice the gradient, 2*g*s*(1-s), equals s*(1-s), "g forgotten").
  Tensor g = vec({0.3, -1.2, 0.7, 2.5, -0.4, 1.9, 3.1}, DType::F32);
  std::vector<Tensor> grads;
  {
    NoGradGuard no_grad;  // the engine runs every backward without recording
    grads = node->backward(g);
  }
  if (grads.size() != 1 || !grads[0].defined() || grads[0].shape() != x.shape()) {
    bool one = grads.size() == 1 && grads[0].defined();
    fail(str_cat("backward must return exactly one gradient (one per input) shaped like x ",
                 shape_str(x.shape()), ", got ", grads.size(), " tensor(s)",
                 one ? " of shape " + shape_str(grads[0].shape()) : std::string()));
  }
  std::vector<double> got = grads[0].to_vector(), gv = g.to_vector(), sv, want;
  for (double v : xs) sv.push_back(sigmoid(v));
  for (size_t k = 0; k < xs.size(); ++k) want.push_back(gv[k] * sv[k] * (1 - sv[k]));
  size_t bad = 0;
  while (bad < xs.size() && close(got[bad], want[bad], 1e-5)) ++bad;
  if (bad < xs.size())
    fail(str_cat("backward(g): ", diagnose_backward(got, gv, sv, want), "\n  at x = ", xs[bad],
                 " (s = ", sv[bad], ", g = ", gv[bad], "): got ", got[bad],
                 ", expected dL/dx = g*s*(1-s) = ", want[bad]));
  pass("backward(g) returns g * ds/dx for every element");
}

void check_gradcheck() {
  Generator gen(7);
  Tensor x = randn({3, 4}, gen, 0, 2, DType::F64).set_requires_grad(true);
  GradcheckResult r =
      gradcheck([](const std::vector<Tensor>& in) { return my_sigmoid(in[0]); }, {x});
  std::cout << "  gradcheck (f64, central differences): max |analytic - numeric| = "
            << r.max_abs_error << "\n";
  if (!r.ok) fail(r.report + ". Hint: your backward disagrees with finite differences");
  pass("gradcheck on a 3x4 f64 input");
}

// L = sum((sigmoid(w*x + b) - y)^2) + 0.5 * sum(w*w): w is used twice, so its
// gradient is the sum of two paths.
const std::vector<double> kX = {0.5, -1.0, 2.0, 1.5, -0.3}, kY = {1, 0, 1, 1, 0};
Tensor loss(const Tensor& w, const Tensor& b) {
  Tensor d = my_sigmoid(w * vec(kX, w.dtype()) + b) - vec(kY, w.dtype());
  return sum(d * d) + sum(w * w) * 0.5;
}
double loss_at(double w, double b, DType dtype = DType::F64) {
  NoGradGuard no_grad;
  return loss(vec({w}, dtype), vec({b}, dtype)).item();
}

void check_training_graph() {
  const double w0 = 0.7, b0 = -0.2, eps = 1e-6;
  double hand_w = w0, hand_b = 0;  // the weight-decay path contributes w to dL/dw
  for (size_t i = 0; i < kX.size(); ++i) {
    double s = sigmoid(w0 * kX[i] + b0), common = 2 * (s - kY[i]) * s * (1 - s);
    hand_w += common * kX[i];
    hand_b += common;
  }
  Tensor w = vec({w0}).set_requires_grad(true), b = vec({b0}).set_requires_grad(true);
  int hook_calls = 0;
  w.register_grad_hook([&](Tensor&) { ++hook_calls; });
  Tensor L = loss(w, b);
  L.backward(Tensor(), /*retain_graph=*/true);
  double auto_w = w.grad().item(), auto_b = b.grad().item();
  double fd_w = (loss_at(w0 + eps, b0) - loss_at(w0 - eps, b0)) / (2 * eps);
  double fd_b = (loss_at(w0, b0 + eps) - loss_at(w0, b0 - eps)) / (2 * eps);
  std::cout << "  L = sum((sigmoid(w*x + b) - y)^2) + 0.5*w^2 at w = 0.7, b = -0.2\n"
            << "  dL/dw: autograd " << auto_w << ", by hand " << hand_w << ", finite diff " << fd_w
            << "\n  dL/db: autograd " << auto_b << ", by hand " << hand_b << ", finite diff "
            << fd_b << "\n";
  if (!close(auto_w, hand_w, 1e-9) || !close(auto_b, hand_b, 1e-9) || !close(fd_w, hand_w, 1e-6) ||
      !close(fd_b, hand_b, 1e-6))
    fail("the gradients of L disagree (see the numbers above)");
  if (hook_calls != 1) fail(str_cat("w's gradient hook fired ", hook_calls, " times, expected 1"));
  pass("w.grad and b.grad match the hand derivation and finite differences");

  // Facts (README): accumulation, retain_graph, and why gradcheck uses f64.
  L.backward();  // allowed once more: the first call retained the graph
  std::cout << "facts:\n  backward() again without zero_grad(): w.grad = " << w.grad().item()
            << " (2x: gradients accumulate)\n";
  try {
    L.backward();
    std::cout << "  a third backward() on the freed graph did not throw?!\n";
  } catch (const Error& e) {
    std::cout << "  a third backward() on the freed graph throws: " << e.what() << "\n";
  }
  double fd32 = (loss_at(w0 + eps, b0, DType::F32) - loss_at(w0 - eps, b0, DType::F32)) / (2 * eps);
  std::cout << "  the same finite difference in f32: " << fd32 << " (error "
            << std::fabs(fd32 - hand_w) << "): rounding noise / eps swamps it, hence f64\n";
}

}  // namespace

int main() {
  return lesson::run_checks([] {
    check_forward_and_node();
    check_gradcheck();
    check_training_graph();
  });
}
