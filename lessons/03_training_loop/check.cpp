// Lesson 03 grader: runs train_step() on a synthetic regression, y = x·w_true + b_true +
// noise, and compares every step with an independent reference: the MSE gradient derived by
// hand, 2/B·Xᵀ(Xw + b − y), in f64. An optimizer "spy" records what .grad held at the moment
// step() ran, so a wrong order or a missing zero_grad is named, not just detected.
#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <string>

#include "autograd/node.h"
#include "lessons/03_training_loop/lesson.h"
#include "lessons/lesson_check.h"
#include "nn/gpt.h"

using namespace ms;
using lesson::fail;
using lesson::pass;

namespace {

constexpr int64_t kN = 1024, kD = 10, kB = 64, kSteps = 300;
constexpr double kLr = 0.1, kNoise = 0.1, kBTrue = 0.5;

using Vec = std::vector<double>;

double max_diff(const Vec& a, const Vec& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}
bool near(const Vec& got, const Vec& want, double tol) {
  double scale = 1;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  return max_diff(got, want) <= tol * scale;
}
Vec axpy(const Vec& a, double alpha, const Vec& b) {  // a + alpha * b
  Vec out(a);
  for (size_t i = 0; i < out.size(); ++i) out[i] += alpha * b[i];
  return out;
}
std::string show(const Vec& v) {
  std::string s = "[";
  for (size_t i = 0; i < std::min<size_t>(v.size(), 4); ++i)
    s += str_cat(i ? ", " : "", std::setprecision(5), v[i]);
  return s + (v.size() > 4 ? ", ...]" : "]");
}

// The synthetic data set, as f32 tensors for the model and as f64 copies of the very same
// (rounded) values for the reference.
struct Data {
  Tensor x, y;  // (N, D), (N, 1)
  Vec xs, ys, w_true;
};

Data make_data() {
  Generator gen(3);
  Data d;
  d.x = randn({kN, kD}, gen);
  d.xs = d.x.to_vector();
  for (int64_t j = 0; j < kD; ++j) d.w_true.push_back(gen.normal());
  Vec y(kN);
  for (int64_t i = 0; i < kN; ++i) {
    y[i] = kBTrue + kNoise * gen.normal();
    for (int64_t j = 0; j < kD; ++j) y[i] += d.xs[i * kD + j] * d.w_true[j];
  }
  d.y = from_vector(y, {kN, 1});
  d.ys = d.y.to_vector();
  return d;
}

// theta = (w_0 .. w_{D-1}, b): the model's parameters flattened, weight first.
Vec theta_of(const Linear& m) {
  Vec t = m.weight.to_vector();
  t.push_back(m.bias.item());
  return t;
}

// MSE over rows [r0, r0 + n) and its gradient with respect to theta, by hand:
// r = Xw + b − y, L = mean(r²), dL/dw = 2/n·Xᵀr, dL/db = 2/n·Σr.
double mse(const Data& d, const Vec& th, int64_t r0, int64_t n, Vec* grad = nullptr) {
  double loss = 0;
  if (grad) grad->assign(kD + 1, 0.0);
  for (int64_t i = r0; i < r0 + n; ++i) {
    double r = th[kD] - d.ys[i];
    for (int64_t j = 0; j < kD; ++j) r += d.xs[i * kD + j] * th[j];
    loss += r * r;
    if (!grad) continue;
    for (int64_t j = 0; j < kD; ++j) (*grad)[j] += 2 * r * d.xs[i * kD + j] / n;
    (*grad)[kD] += 2 * r / n;
  }
  return loss / n;
}

// What .grad held (weight then bias, flattened); empty when a parameter had no gradient.
Vec grads_of(const std::vector<Tensor>& params) {
  Vec g;
  for (const Tensor& p : params) {
    if (!p.grad().defined()) return {};
    for (double v : p.grad().to_vector()) g.push_back(v);
  }
  return g;
}

// Plain SGD that records, each time step() runs, what the gradients were at that moment
// and how many backward passes had reached the weight by then (its gradient hook fires once
// per backward()), so "step before backward" and "zero_grad between backward and step",
// which both leave step() an empty .grad, are told apart.
class SpyOptimizer : public Optimizer {
 public:
  SpyOptimizer(std::vector<Tensor> params, double lr) : Optimizer(params, lr), sgd_(params, lr) {
    params_[0].register_grad_hook([this](Tensor&) { ++backwards; });
  }
  void step() override {
    ++calls;
    grads_at_step = grads_of(params_);
    backwards_at_step = backwards;
    sgd_.step();
  }
  size_t state_bytes() const override { return 0; }
  std::string name() const override { return "sgd (observed by the checker)"; }
  int calls = 0, backwards = 0, backwards_at_step = 0;
  Vec grads_at_step;

 private:
  SGD sgd_;
};

std::string hint_for(const Error& e) {
  std::string m = e.what();
  if (m.find("does not require grad") != std::string::npos)
    return "the loss has no graph: the forward ran under a NoGradGuard (or on detached "
           "tensors). Only the update belongs under no-grad; forward and backward need grad mode";
  if (m.find("in-place update") != std::string::npos)
    return "a parameter was updated in place with grad mode on; let opt.step() do the update "
           "(it runs under NoGradGuard)";
  if (m.find("already freed") != std::string::npos)
    return "backward() ran twice through the same graph; call it once per step";
  if (m.find("TODO") != std::string::npos) return "the five steps are listed in the TODO comment";
  return "see the message above";
}

// Names the bug from what .grad held when step() ran. g is the correct gradient of this
// batch, stale what .grad held before train_step was called; `before` counts the backward
// passes of this train_step that ran before step(), `total` all of them.
std::string diagnose_grads(const Vec& seen, const Vec& g, const Vec& stale, int before, int total) {
  const char* skipped =
      " (SGD skips a parameter whose .grad is empty, so nothing was learned). Order: "
      "zero_grad, forward, loss, backward, step";
  if (seen.empty() && total == 0)
    return str_cat("loss.backward() was never called: opt.step() found .grad empty", skipped);
  if (seen.empty() && before == 0)
    return str_cat("opt.step() ran before loss.backward(): it found .grad empty", skipped);
  if (seen.empty())
    return str_cat(
        "zero_grad() ran between loss.backward() and opt.step(), erasing the "
        "gradient step() needs",
        skipped);
  if (!stale.empty() && near(seen, axpy(g, 1, stale), 1e-4))
    return "step() saw this batch's gradient PLUS what .grad held when train_step began (the "
           "previous step's): backward() accumulates into .grad. Clear it at the start of every "
           "step, before backward: opt.zero_grad() (README question 2)";
  if (!stale.empty() && near(seen, stale, 1e-4))
    return "step() saw the previous step's gradient, not this batch's: it ran before "
           "loss.backward()";
  if (near(seen, axpy(g, 1, g), 1e-4))
    return before >= 2 ? "step() saw twice the gradient: backward() ran twice before step()"
                       : "step() saw twice the gradient: the loss was doubled";
  double num = 0, den = 0;  // least-squares ratio seen ≈ k·g
  for (size_t i = 0; i < g.size() && i < seen.size(); ++i)
    num += seen[i] * g[i], den += g[i] * g[i];
  double k = den > 0 ? num / den : 0;
  if (seen.size() == g.size() && std::fabs(k) > 1e-6 && near(seen, axpy(Vec(g.size()), k, g), 1e-4))
    return str_cat("step() saw ", k, " times the MSE gradient: the loss must be mean((pred - y)^2)",
                   std::fabs(k - kB) < 1e-3 ? " — you took the sum, not the mean (x B = 64)" : "");
  return "step() saw a gradient that is not d mean((pred - y)^2) / d params for this batch";
}

// Runs train_step once on rows [r0, r0 + B) and checks it against the hand-derived step.
// Returns the loss it reported.
double graded_step(Linear& model, SpyOptimizer& opt, const Data& d, int64_t step, int64_t r0) {
  const Tensor w0 = model.weight, b0 = model.bias;
  Vec before = theta_of(model), stale = grads_of(opt.params()), g;
  double want_loss = mse(d, before, r0, kB, &g);
  int calls0 = opt.calls, backwards0 = opt.backwards;
  double loss;
  try {
    loss = train_step(model, opt, narrow(d.x, 0, r0, kB), narrow(d.y, 0, r0, kB));
  } catch (const Error& e) {
    fail(str_cat("train_step threw at step ", step, ": ", e.what(), "\n  Hint: ", hint_for(e)));
  }
  std::string at = str_cat("step ", step, ": ");
  if (!grad_enabled()) fail(at + "grad mode is still off after train_step returned");
  if (!model.weight.same(w0) || !model.bias.same(b0))
    fail(at +
         "model.weight/bias were replaced by new tensors. `w = w - lr * g` creates a new "
         "tensor (recorded in the graph when grad mode is on) that the optimizer does not "
         "hold; update the parameters in place, through opt.step()");
  if (!model.weight.requires_grad() || !model.bias.requires_grad())
    fail(at + "a parameter no longer requires grad: leave requires_grad alone, use NoGradGuard");
  Vec after = theta_of(model);
  int calls = opt.calls - calls0;
  if (calls == 0)
    fail(at + (before == after ? "opt.step() was never called: the parameters did not move"
                               : "the parameters changed but opt.step() was never called: let "
                                 "the optimizer do the update"));
  if (calls > 1) fail(str_cat(at, "opt.step() ran ", calls, " times; once per step"));
  if (!near(opt.grads_at_step, g, 1e-4))
    fail(str_cat(at,
                 diagnose_grads(opt.grads_at_step, g, stale, opt.backwards_at_step - backwards0,
                                opt.backwards - backwards0),
                 "\n  expected .grad ", show(g), ", step() saw ",
                 opt.grads_at_step.empty() ? "none" : show(opt.grads_at_step)));
  if (!near(after, axpy(before, -kLr, g), 1e-5))
    fail(str_cat(at, "after step() the parameters are ", show(after), ", expected ",
                 show(axpy(before, -kLr, g)),
                 " (one SGD update p -= lr * grad). Did something "
                 "else modify them?"));
  if (std::fabs(loss - want_loss) > 1e-4 * (1 + want_loss)) {
    bool post = std::fabs(loss - mse(d, after, r0, kB)) <= 1e-4 * (1 + want_loss);
    fail(str_cat(at, "returned loss ", loss, ", expected ", want_loss,
                 post ? " (you returned the loss AFTER the update: return the one you "
                        "backpropagated)"
                      : " = mean((pred - y)^2) of this batch before the update"));
  }
  return loss;
}

Linear fresh_model() {
  Generator init(11);
  return Linear(kD, 1, /*bias=*/true, init);
}

void check_one_step(const Data& d) {
  Linear model = fresh_model();
  SpyOptimizer opt(model.parameters(), kLr);
  double loss = graded_step(model, opt, d, 0, 0);
  std::cout << "  step 0: loss " << loss << "\n";
  pass("one step: backward filled .grad before step(), one SGD update, the pre-update loss");
}

// Least squares by the normal equations, (AᵀA) θ = Aᵀy with A = [X 1], Gaussian elimination.
Vec ols_fit(const Data& d) {
  const int64_t n = kD + 1;
  std::vector<Vec> m(n, Vec(n + 1, 0.0));
  for (int64_t i = 0; i < kN; ++i) {
    Vec a(d.xs.begin() + i * kD, d.xs.begin() + (i + 1) * kD);
    a.push_back(1.0);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < n; ++c) m[r][c] += a[r] * a[c];
      m[r][n] += a[r] * d.ys[i];
    }
  }
  for (int64_t p = 0; p < n; ++p)  // AᵀA is positive definite: no pivoting needed
    for (int64_t r = p + 1; r < n; ++r)
      for (int64_t c = n; c >= p; --c) m[r][c] -= m[r][p] / m[p][p] * m[p][c];
  Vec th(n);
  for (int64_t r = n - 1; r >= 0; --r) {
    double s = m[r][n];
    for (int64_t c = r + 1; c < n; ++c) s -= m[r][c] * th[c];
    th[r] = s / m[r][r];
  }
  return th;
}

void check_training(const Data& d) {
  Linear model = fresh_model();
  SpyOptimizer opt(model.parameters(), kLr);
  Vec ref = theta_of(model);  // an independent f64 trajectory from the same start
  double first = 0, last = 0;
  std::cout << "  step   loss (yours)   loss (f64 reference)\n";
  for (int64_t s = 0; s < kSteps; ++s) {
    int64_t r0 = (s * kB) % kN;
    Vec g;
    double ref_loss = mse(d, ref, r0, kB, &g);
    ref = axpy(ref, -kLr, g);
    last = graded_step(model, opt, d, s, r0);
    if (s == 0) first = last;
    if (s % 50 == 0 || s == kSteps - 1)
      std::cout << "  " << std::setw(4) << s << "   " << std::setw(12) << last << "   "
                << std::setw(12) << ref_loss << "\n";
  }
  Vec th = theta_of(model);
  if (max_diff(th, ref) > 1e-3)
    fail(str_cat("after ", kSteps, " steps the parameters differ from the f64 reference by ",
                 max_diff(th, ref)));
  pass(str_cat(kSteps, " steps match the reference trajectory step by step"));

  // The noise floor: no w can beat the least-squares fit; its residual ≈ σ² = 0.01.
  double full = mse(d, th, 0, kN), ols = mse(d, ols_fit(d), 0, kN);
  std::cout << "  full-data MSE " << full << "; least-squares optimum " << ols
            << "; noise variance " << kNoise * kNoise << "; first batch " << first << "\n"
            << "  learned vs true:";
  for (int64_t j = 0; j < kD; ++j)
    std::cout << (j % 5 ? "  " : "\n    ") << std::fixed << std::setprecision(3) << th[j] << " ("
              << d.w_true[j] << ")";
  std::cout << "\n    b " << th[kD] << " (" << kBTrue << ")\n" << std::defaultfloat;
  Vec truth = d.w_true;
  truth.push_back(kBTrue);
  if (!(full < 1.1 * ols && first > 100 * full && max_diff(th, truth) < 0.05))
    fail("training did not converge to the noise floor with w close to w_true");
  pass("loss fell to the noise floor and the learned w, b match w_true, b_true within 0.05");
}

// A step must not depend on what .grad held when it began.
void check_dirty_grads(const Data& d) {
  Linear model = fresh_model();
  SpyOptimizer opt(model.parameters(), kLr);
  for (const Tensor& p : model.parameters()) p.set_grad(full(p.shape(), 100.0));
  std::cout << "  .grad pre-filled with 100 (left by an earlier backward) before step 0\n";
  graded_step(model, opt, d, 0, 0);
  pass("a step that starts with stale gradients in .grad clears them first");
}

// Facts the README builds on; they do not depend on your code.
void print_facts(const Data& d) {
  std::cout << "facts:\n";
  Linear m = fresh_model();
  Tensor w = m.weight;
  try {
    add_(w, full(w.shape(), 0.1));
    std::cout << "  add_ on a parameter with grad mode on did not throw?!\n";
  } catch (const Error& e) {
    std::cout << "  in-place update with grad mode on: " << e.what() << "\n";
  }
  Tensor w2 = w - full(w.shape(), 0.1) * 0.5;
  std::cout << "  out-of-place `w = w - lr*g` with grad mode on: a non-leaf made by '"
            << (w2.grad_fn() ? w2.grad_fn()->op : std::string("?"))
            << "', not the optimizer's parameter (and the graph would grow every step)\n";

  // Optimizer state per parameter: what ZeRO-1 shards.
  GPT gpt(GPTConfig{}, 1);
  auto per_param = [](const Optimizer& o, int64_t n) {
    return static_cast<double>(o.state_bytes()) / static_cast<double>(n);
  };
  int64_t n = gpt.num_parameters();
  SGD plain(gpt.parameters(), 0.1), momentum(gpt.parameters(), 0.1, 0.9);
  AdamW adamw(gpt.parameters());
  double adam_bpp = per_param(adamw, n);
  std::cout << "  optimizer state for a GPT of " << n << " params: SGD " << per_param(plain, n)
            << " B/param, SGD+momentum " << per_param(momentum, n) << " B/param, AdamW " << adam_bpp
            << " B/param (m and v in f32)\n"
            << "  formula (not measured here), mixed-precision AdamW per param: 2 (fp16 w) + "
               "2 (fp16 grad) + 4 (fp32 master w) + 4 (m) + 4 (v) = 16 bytes: ZeRO's 16Ψ; "
               "GPT-2 small (124M) -> "
            << 16 * 124.44e6 / 1e9 << " GB before any activation\n";
  if (adam_bpp != 8) fail(str_cat("library: AdamW should hold 8 bytes/param, holds ", adam_bpp));

  // Data parallelism in one process: 2 "ranks" each take half the batch; the mean of their
  // gradients equals the full-batch gradient, so every rank then takes the same step.
  auto grad_on = [&](int64_t r0, int64_t rows) {
    Linear replica = fresh_model();
    Tensor loss =
        mean(pow(replica.forward(narrow(d.x, 0, r0, rows)) - narrow(d.y, 0, r0, rows), 2.0));
    loss.backward();
    return grads_of(replica.parameters());
  };
  Vec full_g = grad_on(0, kB), r0 = grad_on(0, kB / 2), r1 = grad_on(kB / 2, kB / 2), avg(r0);
  for (size_t i = 0; i < avg.size(); ++i) avg[i] = (r0[i] + r1[i]) / 2;
  std::cout << "  2 simulated ranks, 32 rows each: |mean of rank grads - full-batch grad| = "
            << max_diff(avg, full_g) << "; the SUM would be " << show(axpy(avg, 1, avg)) << " = 2x "
            << show(full_g) << " (lesson 06 all-reduces then divides by world size)\n";
  if (max_diff(avg, full_g) > 1e-5) fail("library: averaged half-batch gradients differ");
}

}  // namespace

int main() {
  return lesson::run_checks([] {
    Data d = make_data();
    check_one_step(d);
    check_training(d);
    check_dirty_grads(d);
    print_facts(d);
  });
}
