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

  // Call the learner's backward directly, as the engine would, with a non-uniform g so a
  // backward that ignores g is caught.
  Tensor g = vec({0.5, 1, 1.5, 2, 2.5, 3, 3.5}, DType::F32);
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
  std::vector<double> got = grads[0].to_vector(), gv = g.to_vector();
  for (size_t k = 0; k < xs.size(); ++k) {
    double sk = sigmoid(xs[k]), want = gv[k] * sk * (1 - sk);
    if (close(got[k], want, 1e-5)) continue;
    std::string hint = close(got[k], sk * (1 - sk), 1e-5)
                           ? "you return ds/dx; the chain rule also multiplies by g = dL/ds"
                           : "differentiate 1/(1+e^-x) and write it in terms of s, then "
                             "multiply by g (README question 2)";
    fail(str_cat("backward(g) at x = ", xs[k], " (s = ", sk, ", g = ", gv[k], "): got ", got[k],
                 ", expected dL/dx = ", want, ". Hint: ", hint));
  }
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
