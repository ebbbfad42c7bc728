// The PyTorch peer of bench_train_step: finds a Python with torch, runs
// bench/torch_gpt.py at a thread count and parses its result lines.
#pragma once
#include <array>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "bench/openblas_core.h"
#include "tensor/cpu/gemm.h"

namespace {

std::string run_capture(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    *rc = -1;
    return out;
  }
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  *rc = pclose(p);
  return out;
}

// The first Python that can import torch (Debian's python3-torch lives under
// /usr/bin/python3; a pyenv python3 earlier on PATH usually lacks it).
std::optional<std::string> find_torch_python() {
  for (const char* py : {"/usr/bin/python3", "python3"}) {
    const std::string cmd = std::string(py) + " -c 'import torch' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return std::string(py);
  }
  return std::nullopt;
}

struct TorchResult {
  double med_ms = 0, best_ms = 0;
  double fwd_ms = -1, bwd_ms = -1, opt_ms = -1;  // phase medians (-1: not reported)
  double cpu_ms = -1;                            // median process CPU time per step
  std::string info;                              // its human-readable lines
};

// The OpenBLAS core type the PyTorch child gets: bench/openblas_core.h.

std::optional<TorchResult> run_torch(const std::string& py, const std::string& script,
                                     const std::string& data, int threads, int warmup, int steps,
                                     const std::string& model_args = "") {
  const std::string core = openblas_coretype();
  const std::string cmd =
      "OMP_NUM_THREADS=" + std::to_string(threads) + " MKL_NUM_THREADS=" + std::to_string(threads) +
      " OPENBLAS_NUM_THREADS=" + std::to_string(threads) +
      (core.empty() ? "" : " OPENBLAS_CORETYPE=" + core) + " " + py + " " + script + " --threads " +
      std::to_string(threads) + " --steps " + std::to_string(steps) + " --warmup " +
      std::to_string(warmup) + " --data '" + data + "' " + model_args + " 2>&1";
  int rc = 0;
  const std::string out = run_capture(cmd, &rc);
  TorchResult r;
  bool got = false;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t end = out.find('\n', pos);
    if (end == std::string::npos) end = out.size();
    const std::string line = out.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind("TORCH_MS_PER_STEP ", 0) == 0) {
      r.med_ms = std::atof(line.c_str() + 18);
      got = true;
    } else if (line.rfind("TORCH_PHASES ", 0) == 0) {
      std::sscanf(line.c_str() + 13, "%lf %lf %lf", &r.fwd_ms, &r.bwd_ms, &r.opt_ms);
    } else if (line.rfind("TORCH_CPU_MS ", 0) == 0) {
      r.cpu_ms = std::atof(line.c_str() + 13);
    } else if (line.rfind("TORCH_MS_BEST ", 0) == 0) {
      r.best_ms = std::atof(line.c_str() + 14);
    } else if (!line.empty()) {
      r.info += "  " + line + "\n";
    }
  }
  if (rc != 0 || !got) {
    std::printf("PyTorch run failed (exit %d):\n%s", rc, out.c_str());
    return std::nullopt;
  }
  return r;
}

}  // namespace
