#include "parallel/zero/memory.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "tensor/factory.h"

namespace ms {

MemoryEstimate estimate_memory(int64_t num_params, int dp, int stage,
                               size_t optimizer_bytes_per_param, size_t param_bytes,
                               size_t grad_bytes) {
  MS_CHECK(num_params >= 0, "estimate_memory: num_params ", num_params, " is negative");
  MS_CHECK(dp >= 1, "estimate_memory: dp ", dp, " must be at least 1");
  MS_CHECK(stage >= 0 && stage <= 3, "estimate_memory: ZeRO stage ", stage,
           " does not exist (valid: 0 = plain data parallelism, 1, 2, 3)");
  MemoryEstimate e;
  e.num_params = num_params;
  e.dp = dp;
  e.stage = stage;
  e.optimizer_bytes_per_param = optimizer_bytes_per_param;
  e.param_bytes = param_bytes;
  e.grad_bytes = grad_bytes;
  const double psi = static_cast<double>(num_params), D = dp;
  const double K = static_cast<double>(optimizer_bytes_per_param);
  // Stage s partitions the first s of: optimizer state, gradients, parameters.
  e.optimizer = stage >= 1 ? K * psi / D : K * psi;
  const double P = static_cast<double>(param_bytes), G = static_cast<double>(grad_bytes);
  e.grads = stage >= 2 ? G * psi / D : G * psi;
  e.params = stage >= 3 ? P * psi / D : P * psi;
  return e;
}

std::string MemoryEstimate::formula() const {
  const std::string k = std::to_string(optimizer_bytes_per_param);
  const std::string p = std::to_string(param_bytes), g = std::to_string(grad_bytes);
  switch (stage) {
    case 0:
      return p + "Ψ + " + g + "Ψ + " + k + "Ψ";
    case 1:
      return p + "Ψ + " + g + "Ψ + " + k + "Ψ/D";
    case 2:
      return p + "Ψ + (" + g + "+" + k + ")Ψ/D";
    default:
      return "(" + p + "+" + g + "+" + k + ")Ψ/D";
  }
}

void MemoryCounter::add(Category c, const Tensor& t) {
  if (!t.defined()) return;
  const Storage* s = t.storage().get();
  if (seen_.insert(s).second) bytes_[c] += s->nbytes();
}

std::vector<MemoryReport> gather_memory_reports(Communicator& comm, const MemoryReport& mine) {
  // Every field travels as a double (byte counts stay exact below 2^53).
  auto pack = [](const MemoryReport& r) {
    const MemoryEstimate& e = r.predicted;
    return std::vector<double>{
        double(r.rank),      double(r.params),         double(r.grads),
        double(r.optimizer), double(r.buffers),        double(r.peak),
        double(r.layout),    double(r.released_alive), double(e.num_params),
        double(e.dp),        double(e.stage),          double(e.optimizer_bytes_per_param),
        double(e.param_bytes), double(e.grad_bytes)};
  };
  std::vector<double> mine_v = pack(mine);
  const int64_t n = static_cast<int64_t>(mine_v.size());
  Tensor in = from_vector(mine_v, {n}, DType::F64);
  Tensor out = Tensor::empty({n * comm.size()}, DType::F64);
  comm.all_gather(in, out);
  std::vector<double> all = out.to_vector();
  std::vector<MemoryReport> reports;
  for (int r = 0; r < comm.size(); ++r) {
    const double* v = all.data() + r * n;
    auto z = [](double x) { return static_cast<size_t>(x); };
    MemoryReport m;
    m.rank = static_cast<int>(v[0]);
    m.params = z(v[1]), m.grads = z(v[2]), m.optimizer = z(v[3]), m.buffers = z(v[4]);
    m.peak = z(v[5]), m.layout = z(v[6]), m.released_alive = z(v[7]);
    m.predicted = estimate_memory(static_cast<int64_t>(v[8]), static_cast<int>(v[9]),
                                  static_cast<int>(v[10]), z(v[11]), z(v[12]), z(v[13]));
    reports.push_back(m);
  }
  return reports;
}

std::string format_bytes(double bytes) {
  std::string digits = std::to_string(static_cast<long long>(std::llround(bytes)));
  std::string out;
  int n = static_cast<int>(digits.size());
  for (int i = 0; i < n; ++i) {
    out += digits[i];
    if (digits[i] != '-' && (n - 1 - i) % 3 == 0 && i != n - 1) out += ',';
  }
  return out;
}

namespace {
// std::setw counts bytes, and "Ψ" is two: pad by code points instead.
std::string pad(const std::string& s, size_t width) {
  size_t chars = 0;
  for (unsigned char c : s) chars += (c & 0xC0) != 0x80;
  return chars >= width ? s : std::string(width - chars, ' ') + s;
}
std::string b(double bytes) {
  return format_bytes(bytes);
}
}  // namespace

std::string format_memory_table(const std::vector<MemoryReport>& per_rank,
                                const std::string& title) {
  std::ostringstream os;
  if (per_rank.empty()) return "(no memory reports)\n";
  const MemoryEstimate& e = per_rank[0].predicted;
  if (title.empty()) {
    os << "ZeRO stage " << e.stage << (e.stage == 0 ? " (plain data parallelism)" : "")
       << ", D = " << e.dp << ", Ψ = " << b(double(e.num_params))
       << " parameters, K = " << e.optimizer_bytes_per_param
       << " bytes of optimizer state per parameter";
    if (e.param_bytes != 4)
      os << " (mixed precision: " << e.param_bytes << "-byte params, " << e.grad_bytes
         << "-byte grads, K = 4 fp32 master + " << e.optimizer_bytes_per_param - 4
         << " optimizer state)";
    os << "\n";
  } else {
    os << title << "\n";
  }
  os << "paper formula per rank: " << e.formula() << " = " << b(e.params) << " + " << b(e.grads)
     << " + " << b(e.optimizer) << " = " << b(e.total()) << " bytes\n";
  const size_t w = 11;
  for (const char* h :
       {"rank", "params", "grads", "optimizer", "buffers", "total", "layout", "formula", "peak"})
    os << pad(h, std::string(h) == "rank" ? 4 : w);
  os << "\n";
  for (const MemoryReport& r : per_rank) {
    os << pad(std::to_string(r.rank), 4) << pad(b(double(r.params)), w)
       << pad(b(double(r.grads)), w) << pad(b(double(r.optimizer)), w)
       << pad(b(double(r.buffers)), w) << pad(b(double(r.total())), w)
       << pad(b(double(r.layout)), w) << pad(b(r.predicted.total()), w) << pad(b(double(r.peak)), w)
       << "\n";
    if (r.released_alive != 0)
      os << "     rank " << r.rank << ": " << b(double(r.released_alive))
         << " bytes of released parameters are still referenced (a leak)\n";
  }
  os << "total = measured from the tensors held; layout = the same formula with padded sizes";
  if (e.stage == 3) os << "\n  + the parameters outside the blocks (wte, wpe, ln_f), kept gathered";
  os << "; peak also counts gradient buckets in flight";
  if (e.stage == 3) os << " and gathered blocks";
  os << "\n";
  return os.str();
}

std::string format_memory_formula_table(int64_t num_params, const std::vector<int>& dps,
                                        size_t optimizer_bytes_per_param) {
  std::ostringstream os;
  const MemoryEstimate base = estimate_memory(num_params, 1, 0, optimizer_bytes_per_param);
  os << "model states per rank, Ψ = " << format_bytes(double(num_params))
     << " parameters, fp32, K = " << optimizer_bytes_per_param
     << " bytes of optimizer state per parameter\n";
  os << pad("stage", 6) << pad("formula", 22) << pad("D", 4) << pad("params", 16)
     << pad("grads", 16) << pad("optimizer", 16) << pad("total bytes", 18) << pad("vs DDP", 10)
     << "\n";
  for (int stage = 0; stage <= 3; ++stage) {
    for (int D : dps) {
      MemoryEstimate e = estimate_memory(num_params, D, stage, optimizer_bytes_per_param);
      std::ostringstream ratio;
      ratio << std::fixed << std::setprecision(3)
            << (base.total() > 0 ? e.total() / base.total() : 0.0) << "x";
      os << pad(std::to_string(stage), 6) << pad(e.formula(), 22) << pad(std::to_string(D), 4)
         << pad(b(e.params), 16) << pad(b(e.grads), 16) << pad(b(e.optimizer), 16)
         << pad(b(e.total()), 18) << pad(ratio.str(), 10) << "\n";
    }
  }
  return os.str();
}

}  // namespace ms
