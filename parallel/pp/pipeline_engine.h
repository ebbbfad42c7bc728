// The pipeline runtime: executes one stage's instruction list (schedule.h) with
// real tensors and blocking point-to-point messages over the mesh's pp group,
// one handler per instruction, as DeepSpeed's PipelineEngine maps each
// PipeInstruction class to an _exec_* method (_INSTRUCTION_MAP) and loops over
// the list (_exec_schedule).
//
// The model is cut into S = p·v virtual stages of consecutive blocks
// (stage_layers: uniform, the remainder to the early stages, DeepSpeed's
// partition_method='uniform'); virtual stage s = chunk·p + rank (Megatron's
// interleaved layout). The first virtual stage also runs the embedding, the
// last the final LayerNorm, the tied head and the loss (docs/architecture.md:
// the GPT exposes embed | blocks | head_loss, and the pipeline calls them).
//
// What crosses a stage boundary: the (B, T, C) activation forward, its
// gradient back, shapes known from the config (Megatron's fixed tensor_shape;
// no shape message). The receiver turns a received activation into a leaf
// that requires grad, runs its layers on it, and in backward sends that
// leaf's .grad to the previous stage.
//
// The loss exists on the last stage only: each micro-batch's loss is scaled
// by 1/m exactly once, there, before its backward (Megatron's
// forward_step_calc_loss; DeepSpeed#7773 and PR #8154 are what happens
// otherwise); the mean loss is then broadcast over pp for logging
// (DeepSpeed's _aggregate_total_loss).
//
// The tied embedding (Press & Wolf 2017; GPT-2 ties the head to wte): the
// first stage uses wte to embed, the last stage holds its own copy for the
// head. At construction the last stage copies the first stage's wte; in
// ReduceTiedGrads the two exchange their gradients and each adds the other's,
// so both copies hold the same sum (Megatron's _allreduce_word_embedding_grads;
// DeepSpeed's _exec_reduce_tied_grads). The schedule puts it before
// ReduceGrads (Megatron#844).
#pragma once
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "nn/data.h"
#include "parallel/comm/communicator.h"
#include "parallel/pp/schedule.h"

namespace ms::pp {

// Blocks [begin, end) of virtual stage s of `stages`: n_layer / stages each,
// the first n_layer % stages one more. An ms::Error when n_layer < stages.
struct LayerRange {
  int64_t begin = 0, end = 0;
};
LayerRange stage_layers(int64_t n_layer, int stages, int s);

// Which pipeline rank trains each parameter, by its Hugging Face name:
// wte and wpe on rank 0, "h.i." on the rank of block i's virtual stage, ln_f
// on rank p − 1; the last rank also trains its copy of wte (tied).
struct StageParams {
  std::vector<bool> owned;      // per name: this rank trains it
  std::vector<bool> tied_copy;  // per name: the last stage's wte when p > 1
};
StageParams stage_params(const std::vector<std::string>& names, int64_t n_layer, int p, int v,
                         int rank);

// The model's parts, as the pipeline calls them (serial GPT or its tp cut).
struct StageModel {
  std::function<Tensor(const Tensor& idx)> embed;                     // i32 (B, T) -> (B, T, C)
  std::function<Tensor(int64_t layer, const Tensor& x)> block;        // (B, T, C) -> (B, T, C)
  std::function<Tensor(const Tensor& x, const Tensor& y)> head_loss;  // -> mean loss, scalar
};

// What the last instructions call back (the ZeroOptimizer's two halves).
struct StepHooks {
  std::function<void()> reduce_grads;    // ReduceGrads
  std::function<void()> optimizer_step;  // OptimizerStep
};

// One executed instruction, in seconds since the step began on this rank.
struct Event {
  Instr instr;
  double start, end;
};

class PipelineEngine {
 public:
  // Collective over `pp` (the first and last stage exchange wte, if tied is
  // defined). `schedule` is the whole step's lists (its stages == pp.size());
  // `activation` the shape crossing a boundary, e.g. {B, T, C}; `tied` this
  // rank's wte weight (used on the first and last stage only).
  PipelineEngine(StageModel model, Communicator pp, Schedule schedule, int64_t n_layer,
                 std::vector<int64_t> activation, Tensor tied);

  // Runs this stage's list for one step. load(mb) gives micro-batch mb's
  // tokens (x on the first stage, y on the last). Returns the mean of the m
  // unscaled micro-batch losses on the last stage, 0 elsewhere (broadcast it
  // with broadcast_loss, outside any traffic meter if it must not count).
  double train_step(const std::function<Batch(int)>& load, const StepHooks& hooks);
  // Collective over pp: the last stage's value on every stage.
  double broadcast_loss(double loss);
  // Forward only, no graph, for evaluation: one batch through the virtual
  // stages in order (a chain of blocking send/recv, no cycle); returns the
  // loss on every stage (broadcast from the last). The caller sets eval mode.
  double forward_loss(const Batch& b);

  const Schedule& schedule() const { return schedule_; }
  int rank() const { return rank_; }
  // The last step's events, in execution order.
  const std::vector<Event>& events() const { return events_; }
  // The most (micro-batch, chunk) forwards whose activations were held at
  // once (forwarded, not yet backwarded) during the last step: the measured
  // counterpart of SimResult::peak_in_flight.
  int peak_stashed() const { return peak_; }
  // The most bytes this process held above the step's start, sampled after
  // each forward (tensor/storage.h's cpu_bytes_allocated): the stashed
  // activations' memory, measured.
  size_t peak_stash_bytes() const { return peak_bytes_; }

 private:
  using Handler = void (PipelineEngine::*)(const Instr&);
  void exec_load(const Instr& in);
  void exec_forward(const Instr& in);
  void exec_backward(const Instr& in);
  void exec_send_activation(const Instr& in);
  void exec_recv_activation(const Instr& in);
  void exec_send_grad(const Instr& in);
  void exec_recv_grad(const Instr& in);
  void exec_reduce_tied_grads(const Instr& in);
  void exec_reduce_grads(const Instr& in);
  void exec_optimizer_step(const Instr& in);
  static Handler handler(Op op);
  // Where the model lives (its tied embedding's device): received
  // activations and gradients are allocated there (`train --device`).
  Device device() const { return tied_.defined() ? tied_.device() : Device::CPU; }
  // This rank holds a copy of the tied wte that ReduceTiedGrads sums: the
  // first or the last stage, when there are two.
  bool holds_tied() const { return p_ > 1 && tied_.defined() && (rank_ == 0 || rank_ == p_ - 1); }
  int tag(const Instr& in, bool grad) const;

  using Key = std::pair<int, int>;  // (micro-batch, chunk)
  StageModel model_;
  Communicator pp_;
  Schedule schedule_;
  int rank_, p_, v_, m_;
  int64_t n_layer_;
  std::vector<int64_t> activation_;
  Tensor tied_;
  // The step in flight.
  const std::function<Batch(int)>* load_ = nullptr;
  const StepHooks* hooks_ = nullptr;
  std::map<int, Batch> batches_;     // loaded micro-batches
  std::map<Key, Tensor> inputs_;     // received activations (leaves requiring grad)
  std::map<Key, Tensor> outputs_;    // forward results kept for backward (or the scaled loss)
  std::map<Key, Tensor> grads_in_;   // received d loss / d output
  std::map<Key, Tensor> grads_out_;  // d loss / d input, to send
  double loss_sum_ = 0;
  int in_flight_ = 0, peak_ = 0;
  size_t base_bytes_ = 0, peak_bytes_ = 0;
  std::vector<Event> events_;
};

}  // namespace ms::pp
