// Lesson 12 grader: my_checkpoint on one GPT-2 block with dropout 0.1 against
// the plain block, then on every block of a small GPT trained for two steps.
// It prints what the learner's code measurably did — the bytes its forward
// left allocated (the allocator's counter, as parallel/tp/memory_report.h
// measures a layer), how many times the block ran in forward and in backward,
// where the dropout streams ended — and names the likely bug:
//   the output or the gradients differ only with dropout on  -> the RNG trap
//   the forward kept what the plain block keeps              -> no saving
//   the block ran more than once in backward                 -> recomputed twice
//   the recompute ran with grad mode off                      -> no EnableGradGuard
//   x got no gradient (the parameters did)                   -> detached input
//   the streams are not where the forward left them          -> not put back
// Between the forward and the backward the block runs once more (another
// micro-batch through the same block, as in a pipeline), so the streams have
// moved on when backward comes — the case the replay exists for.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "lessons/12_activation_checkpointing/lesson.h"
#include "lessons/lesson_check.h"
#include "nn/checkpointed_block.h"  // dropout_generators
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "parallel/tp/activation_memory.h"
#include "tensor/storage.h"

using namespace ms;
using lesson::fail;
using lesson::pass;

namespace {

constexpr int64_t B = 2, T = 16, C = 32, NH = 4, L = 2;
constexpr double kDropout = 0.1;
constexpr int64_t kActBytes = 4 * B * T * C;  // one (B, T, C) f32 activation

GPTConfig config(double dropout, int64_t layers) {
  GPTConfig c;
  c.n_layer = layers, c.n_head = NH, c.n_embd = C, c.block_size = T, c.dropout = dropout;
  return c;
}

Tensor seeded(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  return randn(shape, g);
}

Tensor leaf(const Tensor& t) {
  return detach(clone(t)).set_requires_grad(true);
}

bool same(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.shape() == b.shape() && a.to_vector() == b.to_vector();
}

double max_diff(const Tensor& a, const Tensor& b) {
  if (!a.defined() && !b.defined()) return 0;  // e.g. wte: outside the block, no gradient
  if (!a.defined() || !b.defined() || a.shape() != b.shape()) return INFINITY;
  std::vector<double> x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::fmax(m, std::fabs(x[i] - y[i]));
  return m;
}

// "k of n": how many of the module's parameters got a (non-zero) gradient.
std::string params_with_grad(const Module& m) {
  int n = 0, with = 0;
  for (const auto& [name, p] : m.named_parameters()) {
    const Tensor g = p.grad();
    bool zero = true;
    if (g.defined())
      for (double v : g.to_vector()) zero = zero && v == 0;
    ++n, with += zero ? 0 : 1;
  }
  return str_cat(with, " of ", n);
}

bool all_zero(const Tensor& t) {
  for (double v : t.to_vector())
    if (v != 0) return false;
  return true;
}

// The first parameter whose gradient differs from the plain block's ("" if none).
std::string first_grad_mismatch(const Module& mine, const Module& plain, double* worst) {
  auto pm = mine.named_parameters(), pp = plain.named_parameters();
  *worst = 0;
  std::string first;
  for (size_t i = 0; i < pm.size(); ++i) {
    const double d = max_diff(pm[i].second.grad(), pp[i].second.grad());
    if (d != 0 && first.empty()) first = pp[i].first;
    *worst = std::fmax(*worst, d);
  }
  return first;
}

std::vector<uint64_t> states(const std::vector<Generator*>& gens) {
  std::vector<uint64_t> s;
  for (const Generator* g : gens) s.push_back(g->seed_state());
  return s;
}

// One block through my_checkpoint and through itself, the same way: forward,
// another micro-batch's forward through the block, backward of a fixed dy.
struct BlockRun {
  Tensor y, gx;
  int64_t kept = 0;  // bytes the forward left allocated
  int forward_runs = 0, backward_runs = 0;
  int backward_runs_without_grad = 0;  // recomputes that ran with grad mode off
  std::vector<uint64_t> streams_after;  // the dropout streams once backward is done
  std::string backward_error;           // what backward threw, if anything
};

BlockRun run_plain(GPT& model, const Tensor& x0, const Tensor& x1, const Tensor& dy) {
  Layer& block = *model.blocks()[0];
  BlockRun r;
  Tensor x = leaf(x0);
  const size_t before = cpu_bytes_allocated();
  r.y = block.forward(x);
  r.kept = static_cast<int64_t>(cpu_bytes_allocated() - before);
  {
    NoGradGuard no_grad;
    block.forward(x1);  // the next micro-batch
  }
  r.y.backward(dy);
  r.gx = x.grad();
  r.streams_after = states(dropout_generators(block));
  return r;
}

BlockRun run_yours(GPT& model, const Tensor& x0, const Tensor& x1, const Tensor& dy) {
  std::shared_ptr<Layer> block = model.blocks()[0];
  const std::vector<Generator*> streams = dropout_generators(*block);
  BlockRun r;
  int runs = 0;
  std::vector<bool> grad_mode_of_run;  // grad_enabled() as each run of the block began
  auto fn = [block, &runs, &grad_mode_of_run](const Tensor& t) {
    ++runs;
    grad_mode_of_run.push_back(grad_enabled());
    return block->forward(t);
  };
  Tensor x = leaf(x0);
  const size_t before = cpu_bytes_allocated();
  r.y = my_checkpoint(fn, x, streams);
  r.kept = static_cast<int64_t>(cpu_bytes_allocated() - before);
  r.forward_runs = runs;
  {
    NoGradGuard no_grad;
    block->forward(x1);  // the next micro-batch: not one of your forwards
  }
  try {
    if (r.y.defined() && r.y.requires_grad()) r.y.backward(dy);
  } catch (const Error& e) {  // e.g. an undefined gradient returned for x
    r.backward_error = e.what();
  }
  r.backward_runs = runs - r.forward_runs;
  for (size_t i = size_t(r.forward_runs); i < grad_mode_of_run.size(); ++i)
    r.backward_runs_without_grad += grad_mode_of_run[i] ? 0 : 1;
  r.gx = x.grad();
  r.streams_after = states(streams);
  return r;
}

// ---- 1. one block ----

void check_one_block() {
  const Tensor x0 = seeded({B, T, C}, 3), x1 = seeded({B, T, C}, 4), dy = seeded({B, T, C}, 5);
  GPT plain_model(config(kDropout, 1), 7), your_model(config(kDropout, 1), 7);
  const BlockRun plain = run_plain(plain_model, x0, x1, dy);
  const BlockRun yours = run_yours(your_model, x0, x1, dy);

  std::printf("one GPT-2 block (B %lld, T %lld, C %lld, %lld heads, dropout %g), measured:\n",
              (long long)B, (long long)T, (long long)C, (long long)NH, kDropout);
  std::printf(
      "  your forward left %lld B allocated; the plain block's %lld B (its graph: %s "
      "+ the named extras, parallel/tp/activation_memory.h); the output alone is %lld B\n",
      (long long)yours.kept, (long long)plain.kept, "16·sbh + a·sb", (long long)kActBytes);
  std::printf("  the block ran %d time(s) in your forward and %d time(s) in backward\n",
              yours.forward_runs, yours.backward_runs);

  if (!yours.y.defined() || yours.y.shape() != plain.y.shape())
    fail(str_cat("my_checkpoint returned ",
                 yours.y.defined() ? shape_str(yours.y.shape()) : "an undefined tensor",
                 "; expected the block's output ", shape_str(plain.y.shape())));
  if (yours.forward_runs != 1)
    fail(str_cat("the block ran ", yours.forward_runs,
                 " time(s) in your forward: run it exactly once there (once more in backward)"));
  if (!same(yours.y, plain.y))
    fail(str_cat("your output differs from the plain block's (max |Δ| ", max_diff(yours.y, plain.y),
                 "): the forward must be the block itself, drawing the masks the streams give it "
                 "now — do not move the streams before the forward"));
  pass("forward: the output equals the plain block's, bit for bit");

  if (!yours.y.requires_grad())
    fail(
        "y does not require grad: record ONE Node (ms::record) with input {x} whose backward "
        "recomputes the block");
  if (yours.kept >= plain.kept)
    fail(str_cat("your forward kept ", yours.kept, " B — as much as the plain block (", plain.kept,
                 " B): no saving. The forward's graph is still alive (built with grad on and "
                 "held by your Node, or by y); run the block under ms::NoGradGuard and save "
                 "only ms::detach(x)"));
  if (yours.kept == 2 * kActBytes)
    fail(str_cat("your forward kept ", yours.kept, " B: the output (", kActBytes,
                 " B) and a COPY of x (", kActBytes,
                 " B). Save ms::detach(x), a view of the caller's tensor: it is alive anyway"));
  if (yours.kept != kActBytes)
    fail(str_cat("your forward kept ", yours.kept, " B; checkpointing keeps the output alone (",
                 kActBytes, " B = B·T·C·4) and shares x with the caller"));
  pass(str_cat("memory: your forward kept ", yours.kept,
               " B (the output; x is shared), the plain "
               "block ",
               plain.kept, " B: ", plain.kept / yours.kept, "x less"));

  if (yours.backward_runs == 0)
    fail(
        "the block never ran in backward: nothing but x was kept, so backward must rebuild "
        "the graph by running the block again, with grad on (ms::EnableGradGuard)");
  if (yours.backward_runs > 1)
    fail(str_cat("the block ran ", yours.backward_runs,
                 " times in backward: recompute it ONCE, with grad on, and backpropagate through "
                 "that graph — each extra run costs a whole forward and buys nothing"));
  // The engine runs every backward function under NoGradGuard
  // (autograd/engine.cpp), so a recompute without EnableGradGuard builds no
  // graph: nothing to backpropagate through, no gradient for x or any weight.
  if (yours.backward_runs_without_grad > 0)
    fail(str_cat(
        "your recompute ran with grad mode OFF (grad_enabled() was false when the block ",
        "started in backward): the autograd engine runs every backward function under ",
        "NoGradGuard, so the recomputed block recorded no graph and its output does not ",
        "require grad",
        yours.backward_error.empty() ? "" : " (backward threw: " + yours.backward_error + ")",
        ". x's gradient is ", yours.gx.defined() ? "zero" : "undefined", " and ",
        params_with_grad(*your_model.blocks()[0]), " of the block's parameters got one. ",
        "Wrap the recompute in ",
        "ms::EnableGradGuard — the missing EnableGradGuard, not a detached input"));
  if (!yours.gx.defined() || all_zero(yours.gx))
    fail(str_cat(
        "x got no gradient (", params_with_grad(*your_model.blocks()[0]),
        " of the block's parameters did)",
        yours.backward_error.empty() ? "" : " (backward threw: " + yours.backward_error + ")",
        ": your recompute ran from an input that does not require grad (ms::detach(x) "
        "without set_requires_grad(true)), so backward stopped at the block. Recompute "
        "from a fresh leaf that requires grad and return its .grad"));
  if (!yours.backward_error.empty()) fail("your backward threw: " + yours.backward_error);

  double worst = 0;
  const std::string bad_param = first_grad_mismatch(your_model, plain_model, &worst);
  const bool gx_same = same(yours.gx, plain.gx);
  if (!gx_same || !bad_param.empty()) {
    // The same code with dropout 0: nothing to replay. Exact there means the masks differ.
    GPT plain0(config(0, 1), 7), yours0(config(0, 1), 7);
    const BlockRun p0 = run_plain(plain0, x0, x1, dy);
    const BlockRun y0 = run_yours(yours0, x0, x1, dy);
    double worst0 = 0;
    const bool exact_without_dropout =
        same(y0.gx, p0.gx) && first_grad_mismatch(yours0, plain0, &worst0).empty();
    const std::string what =
        str_cat(gx_same ? "" : "dL/dx", !gx_same && !bad_param.empty() ? " and " : "",
                bad_param.empty() ? "" : str_cat("the gradient of ", bad_param, " (and others)"),
                " differ from the plain block's (max |Δ| ",
                std::fmax(worst, max_diff(yours.gx, plain.gx)), ")");
    if (exact_without_dropout)
      fail(str_cat(what,
                   "; with dropout 0 the same code is exact. The recompute drew OTHER "
                   "dropout masks than the forward: the RNG trap. Snapshot the streams "
                   "before the forward and put those states back before recomputing"));
    fail(str_cat(what,
                 ", even with dropout 0: backpropagate dy through the recomputed output "
                 "(y2.backward(dy)) and return the leaf's gradient"));
  }
  pass("backward: dL/dx and every parameter's gradient equal the plain block's, bit for bit");

  if (yours.streams_after != plain.streams_after)
    fail(
        "after backward the dropout streams are not where they were when backward began: "
        "after replaying the forward's states for the recompute, put back the current ones, "
        "or the next forward draws other masks than it would without checkpointing");
  pass("the dropout streams end where the plain block's do: the next forward draws the same masks");
}

// ---- 2. a whole GPT, every block under your checkpoint ----

class YourCheckpointedBlock : public Layer {
 public:
  YourCheckpointedBlock(std::shared_ptr<Layer> block, int& runs)
      : block_(register_module("", std::move(block))),
        runs_(&runs),
        streams_(dropout_generators(*block_)) {}
  Tensor forward(const Tensor& x) override {
    return my_checkpoint(
        [block = block_, runs = runs_](const Tensor& t) {
          ++*runs;
          return block->forward(t);
        },
        x, streams_);
  }

 private:
  std::shared_ptr<Layer> block_;
  int* runs_;
  std::vector<Generator*> streams_;
};

Tensor tokens(uint64_t seed) {
  Generator g(seed);
  std::vector<double> v(B * T);
  for (double& x : v) x = static_cast<double>(g.next_u64() % 256);
  return from_vector(v, {B, T}, DType::I32);
}

void check_whole_model() {
  GPT plain(config(kDropout, L), 11), yours(config(kDropout, L), 11);
  int runs = 0;
  for (size_t i = 0; i < yours.blocks().size(); ++i)
    yours.replace_block(i, std::make_shared<YourCheckpointedBlock>(yours.blocks()[i], runs));
  AdamW opt_plain(plain.parameters(), 1e-2), opt_yours(yours.parameters(), 1e-2);
  int64_t kept_plain = 0, kept_yours = 0;
  for (int step = 0; step < 2; ++step) {
    const Tensor idx = tokens(20 + step), tgt = tokens(40 + step);
    plain.zero_grad(), yours.zero_grad();
    size_t before = cpu_bytes_allocated();
    Tensor loss_plain = plain.loss(idx, tgt);
    kept_plain = static_cast<int64_t>(cpu_bytes_allocated() - before);
    runs = 0;
    before = cpu_bytes_allocated();
    Tensor loss_yours = yours.loss(idx, tgt);
    kept_yours = static_cast<int64_t>(cpu_bytes_allocated() - before);
    loss_plain.backward();
    loss_yours.backward();
    if (loss_plain.item() != loss_yours.item())
      fail(str_cat("step ", step + 1, ": the loss with your checkpoint on every block is ",
                   loss_yours.item(), ", without ", loss_plain.item()));
    if (runs != 2 * L)
      fail(str_cat("step ", step + 1, ": the ", L, " blocks ran ", runs, " times; ", 2 * L,
                   " expected (each once in forward and once in backward)"));
    double worst = 0;
    const std::string bad = first_grad_mismatch(yours, plain, &worst);
    if (!bad.empty())
      fail(str_cat("step ", step + 1, ": the gradient of ", bad,
                   " differs from the plain model's (max |Δ| ", worst, ")"));
    opt_plain.step();
    opt_yours.step();
  }
  auto pp = plain.named_parameters(), py = yours.named_parameters();
  for (size_t i = 0; i < pp.size(); ++i)
    if (!same(pp[i].second, py[i].second))
      fail(str_cat("after two steps ", pp[i].first, " differs from the plain model's"));
  pass(str_cat("a GPT with all ", L,
               " blocks under your checkpoint trains two AdamW steps "
               "exactly as without: losses, gradients and weights bit for bit; the blocks ran ",
               2 * L, " times per step"));

  // What the graph kept for the whole forward (embedding to loss), measured.
  const BlockActivations a =
      block_activations(ActivationShape{B, T, C, NH, 1, false, false, kDropout});
  // Both keep every block's input; the plain model also everything else a block
  // saves (its count minus the input), and its output is the next one's input.
  const int64_t per_layer = a.saved_bytes() + a.extra_bytes() - 2 * kActBytes;
  std::printf(
      "  the whole forward kept %lld B without checkpointing, %lld B with yours: "
      "%lld B less per layer (counted: %lld B, %s + the dropout extras, less the input "
      "and output a checkpoint keeps)\n",
      (long long)kept_plain, (long long)kept_yours, (long long)((kept_plain - kept_yours) / L),
      (long long)per_layer, a.rule.c_str());
  if (kept_plain - kept_yours != L * per_layer)
    fail(str_cat("the whole model saved ", kept_plain - kept_yours, " B, not the ", L * per_layer,
                 " B the count gives for ", L, " layers"));
  pass(str_cat("memory: ", L, " layers × ", per_layer,
               " B saved, as counted; the price was one more forward of every block"));
}

}  // namespace

int main() {
  return lesson::run_checks([] {
    check_one_block();
    check_whole_model();
  });
}
