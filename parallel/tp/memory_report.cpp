// Per-rank parameter and activation memory under tensor parallelism, measured
// beside the formulas (memory_report.h).
#include "parallel/tp/memory_report.h"

#include <sstream>

#include "nn/checkpointed_block.h"  // dropout_generators
#include "parallel/tp/shard.h"
#include "parallel/zero/memory.h"  // format_bytes
#include "tensor/factory.h"
#include "tensor/storage.h"

namespace ms {

TpParamSplit tp_param_split(const GPTConfig& m, int64_t tp) {
  MS_CHECK(tp >= 1, "tp_param_split: tp ", tp, " must be >= 1");
  MS_CHECK(m.vocab_size % tp == 0 && m.n_embd % tp == 0, "tp_param_split: vocab_size ",
           m.vocab_size, " and n_embd ", m.n_embd, " must be divisible by tp ", tp);
  const int64_t C = m.n_embd, L = m.n_layer;
  return {(m.vocab_size * C + L * (12 * C * C + 7 * C)) / tp, m.block_size * C + L * 6 * C + 2 * C};
}

TpParamSplit held_param_split(const GPT& model) {
  TpParamSplit s;
  for (const auto& [name, p] : model.named_parameters())
    (tp_split_of(name) == TpSplit::Replicated ? s.replicated : s.split) += p.numel();
  return s;
}

int64_t measure_block_activation_bytes(Layer& layer, int64_t n_embd, int64_t B, int64_t tokens) {
  // Generator is a value: copies put the streams back after the extra draws.
  const std::vector<Generator*> streams = dropout_generators(layer);
  std::vector<Generator> saved;
  for (const Generator* g : streams) saved.push_back(*g);
  Generator gen(0x5eed);
  Tensor x = randn({B, tokens, n_embd}, gen);  // no grad, like the embedding's output
  int64_t kept = 0;
  {
    const size_t before = cpu_bytes_allocated();
    Tensor out = layer.forward(x);  // the graph holds what backward needs
    kept = static_cast<int64_t>(cpu_bytes_allocated() - before);
  }  // out and its graph freed here; the parameters never saw a gradient
  for (size_t i = 0; i < streams.size(); ++i) *streams[i] = saved[i];
  return kept + x.numel() * static_cast<int64_t>(dtype_size(x.dtype()));
}

LayerActivationBytes measure_layer_activations(Layer& layer, int64_t n_embd, int64_t B,
                                               int64_t tokens) {
  LayerActivationBytes r;
  if (auto* ckpt = dynamic_cast<CheckpointedBlock*>(&layer)) {
    r.checkpointed_in_run = true;
    r.plain = measure_block_activation_bytes(*ckpt->inner(), n_embd, B, tokens);
    r.checkpointed = measure_block_activation_bytes(layer, n_embd, B, tokens);
    return r;
  }
  r.plain = measure_block_activation_bytes(layer, n_embd, B, tokens);
  // Borrowed, not owned: the wrapper lives only for this one measurement.
  CheckpointedBlock wrapped(std::shared_ptr<Layer>(&layer, [](Layer*) {}));
  r.checkpointed = measure_block_activation_bytes(wrapped, n_embd, B, tokens);
  return r;
}

namespace {

std::string terms(const std::vector<ActivationTerm>& list) {
  std::string s;
  for (const ActivationTerm& a : list)
    s += (s.empty() ? "" : ", ") + a.name + " " + format_bytes(double(a.bytes()));
  return s;
}

// The fp32 bytes one layer keeps in a mode, saved + extras.
int64_t layer_bytes(const ActivationShape& s) {
  const BlockActivations b = block_activations(s);
  return b.saved_bytes() + b.extra_bytes();
}

}  // namespace

std::string tp_memory_report(Communicator& world, const GPTConfig& cfg, const TpParamSplit& held,
                             const LayerActivationBytes& one_sequence,
                             const ActivationShape& shape) {
  // Every rank's measurements, in world rank order (exact as doubles below 2^53).
  constexpr int kN = 4;
  Tensor mine = from_vector(
      std::vector<double>{double(held.split), double(held.replicated), double(one_sequence.plain),
                          double(one_sequence.checkpointed)},
      {kN}, DType::F64);
  Tensor all = Tensor::empty({kN * world.size()}, DType::F64);
  world.all_gather(mine, all);
  const std::vector<double> v = all.to_vector();

  std::ostringstream os;
  const int t = shape.tp;
  const TpParamSplit want = tp_param_split(cfg, t);
  const TpParamSplit serial = tp_param_split(cfg, 1);
  os << "parameters per tp rank (tp " << t << "; Shoeybi et al. 2019): split matrices Ψ_split/t "
     << "+ replicated (LayerNorms, c_proj biases, wpe, ln_f) whole = "
     << format_bytes(double(serial.split)) << "/" << t << " + "
     << format_bytes(double(want.replicated)) << " = " << format_bytes(double(want.total()))
     << " of the model's " << format_bytes(double(serial.total())) << " ("
     << format_bytes(4.0 * double(want.total())) << " bytes fp32)\n";
  bool params_ok = true, acts_ok = true, ckpt_ok = true;
  const BlockActivations count = block_activations(shape);
  const int64_t counted = count.saved_bytes() + count.extra_bytes();
  const BlockActivations ckpt = checkpointed_block_activations(shape);
  const int64_t ckpt_counted = ckpt.saved_bytes() + ckpt.extra_bytes();
  for (int r = 0; r < world.size(); ++r) {
    const double* m = v.data() + kN * r;
    params_ok &= m[0] == double(want.split) && m[1] == double(want.replicated);
    acts_ok &= m[2] * double(shape.batch) == double(counted);
    ckpt_ok &= m[3] * double(shape.batch) == double(ckpt_counted);
  }
  os << "  measured (the tensors each rank holds, before ZeRO partitions them): ";
  if (params_ok)
    os << "split " << format_bytes(double(want.split)) << " + replicated "
       << format_bytes(double(want.replicated)) << " on each of the " << world.size()
       << " rank(s): match\n";
  else
    for (int r = 0; r < world.size(); ++r)
      os << "\n    rank " << r << ": split " << format_bytes(v[kN * r]) << " + replicated "
         << format_bytes(v[kN * r + 1]) << (r + 1 == world.size() ? "  MISMATCH\n" : "");

  const char* mode = t == 1 ? "none" : shape.sequence_parallel ? "tp + sp" : "tp";
  os << "activations one layer keeps for backward, per rank (" << mode
     << "; Korthikanti et al. 2022 in fp32, parallel/tp/activation_memory.h):\n"
     << "  formula " << count.rule << " = " << format_bytes(double(count.saved_bytes()))
     << " bytes\n  + named terms the paper leaves out: " << terms(count.extras) << " = "
     << format_bytes(double(counted)) << " bytes\n";
  os << "  measured (allocator counter, one layer's forward on one sequence, × B = " << shape.batch
     << "): ";
  if (acts_ok)
    os << format_bytes(double(counted)) << " bytes on every rank: match\n";
  else
    for (int r = 0; r < world.size(); ++r)
      os << "\n    rank " << r << ": " << format_bytes(v[kN * r + 2] * double(shape.batch))
         << " bytes" << (r + 1 == world.size() ? "  MISMATCH\n" : "");
  // The same shape in the other modes, by the count (what tp and sp would save).
  ActivationShape none = shape, tp = shape, sp = shape;
  none.tp = 1, none.sequence_parallel = false;
  tp.sequence_parallel = false;
  sp.sequence_parallel = true;
  os << "  same shape by the count: none " << format_bytes(double(layer_bytes(none)));
  if (t > 1) {
    os << ", tp " << t << " " << format_bytes(double(layer_bytes(tp)));
    if (shape.seq % t == 0) os << ", tp " << t << " + sp " << format_bytes(double(layer_bytes(sp)));
  }
  os << " bytes per layer\n";

  // Activation checkpointing: the saving measured, and what it costs.
  os << "with activation checkpointing (--checkpoint-activations, "
     << (one_sequence.checkpointed_in_run ? "on in this run"
                                          : "off in this run: what it would keep")
     << "; nn/checkpointed_block.h):\n  formula " << ckpt.rule << " = "
     << format_bytes(double(ckpt.saved_bytes())) << " bytes"
     << " + " << terms(ckpt.extras) << " = " << format_bytes(double(ckpt_counted)) << " bytes\n"
     << "  measured (allocator counter, the block run through ms::checkpoint): ";
  if (ckpt_ok)
    os << format_bytes(double(ckpt_counted)) << " bytes on every rank: match; "
       << format_bytes(double(counted)) << " -> " << format_bytes(double(ckpt_counted))
       << " bytes per layer (" << format_bytes(double(counted - ckpt_counted)) << " saved, "
       << (counted + ckpt_counted / 2) / ckpt_counted << "x less)\n";
  else
    for (int r = 0; r < world.size(); ++r)
      os << "\n    rank " << r << ": " << format_bytes(v[kN * r + 3] * double(shape.batch))
         << " bytes" << (r + 1 == world.size() ? "  MISMATCH\n" : "");
  os << "  cost: one more forward of every block, in backward (a block's forward + backward is "
        "~3 forwards of FLOPs; recomputed, ~4: +33% of the blocks' compute)\n";
  return os.str();
}

}  // namespace ms
