// Causal attention forward + backward: the blocked kernel that keeps the
// log-sum-exp (tensor/cpu/flash_attention.h, what causal_attention runs)
// beside the unfused one that stores P (tensor/cpu/attention.h, its test
// twin), interleaved in one run so machine load hits both alike.
//
//   bench_attention              the tiny GPT's shape (T 128), GPT-2 width at T 64 and T 1024
//   bench_attention --rounds N   N interleaved rounds per shape (default 7)
//   bench_attention --threads N  OpenMP threads (default 1)
//   bench_attention --isa avx2   force the GEMM micro-kernel (default: the best this CPU runs)
//   bench_attention --shape tiny|gpt2|long   one shape only
//   bench_attention --only blocked|unfused   one kernel only (for perf record / perf stat)
//
// Per round each kernel runs forward + backward `reps` times (about 0.2 s);
// the table shows the median over rounds of ms per forward + backward, the
// ratio old/new per round (min..max: the spread under load) and the bytes
// each keeps for backward besides q|k|v and the output.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <vector>

#include "tensor/cpu/attention.h"
#include "tensor/cpu/flash_attention.h"
#include "tensor/cpu/gemm.h"

namespace {

struct Shape {
  const char* key;
  const char* name;
  int64_t B, T, C, NH;
};

// At 1 thread the process's CPU time: on a shared, loaded machine the time
// this process sat descheduled is not the kernel's. At more threads, wall time.
bool cpu_clock = true;
double now() {
  if (cpu_clock) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 7, threads = 1;
  const char* only_shape = nullptr;
  const char* only_kernel = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--rounds") == 0 && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
      rounds = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc &&
               std::atoi(argv[i + 1]) > 0) {
      threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--shape") == 0 && i + 1 < argc) {
      only_shape = argv[++i];
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc &&
               (std::strcmp(argv[i + 1], "blocked") == 0 ||
                std::strcmp(argv[i + 1], "unfused") == 0)) {
      only_kernel = argv[++i];
    } else if (std::strcmp(argv[i], "--isa") == 0 && i + 1 < argc) {
      if (!ms::cpu::gemm_f32_force_isa(argv[++i])) {
        std::fprintf(stderr, "bench_attention: this CPU cannot run --isa %s\n", argv[i]);
        return 2;
      }
    } else {
      std::fprintf(stderr,
                   "usage: %s [--rounds N] [--threads N] [--isa avx512|avx2|scalar] "
                   "[--shape tiny|gpt2|long] [--only blocked|unfused]\n",
                   argv[0]);
      return 2;
    }
  }
  omp_set_num_threads(threads);
  cpu_clock = threads == 1;
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 0) load[0] = -1;
  std::printf(
      "causal attention fwd+bwd, f32, %d thread%s (%s time), GEMM micro-kernel %s, load average "
      "%.2f\n",
      threads, threads > 1 ? "s" : "", cpu_clock ? "CPU" : "wall", ms::cpu::gemm_f32_isa(),
      load[0]);
  std::printf("%-26s %12s %12s %8s %14s %12s %12s\n", "shape (B, T, C, heads)", "P-kept ms",
              "blocked ms", "ratio", "ratio min..max", "P bytes", "lse bytes");
  const Shape shapes[] = {{"tiny", "tiny GPT", 16, 128, 256, 4},
                          {"gpt2", "GPT-2 width", 4, 64, 768, 12},
                          {"long", "GPT-2 width, T 1024", 2, 1024, 768, 12}};
  for (const Shape& s : shapes) {
    if (only_shape && std::strcmp(only_shape, s.key) != 0) continue;
    const int64_t n_qkv = s.B * s.T * 3 * s.C, n_out = s.B * s.T * s.C;
    const int64_t n_att = s.B * s.NH * s.T * s.T, n_lse = s.B * s.NH * s.T;
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> qkv(static_cast<size_t>(n_qkv)), dout(static_cast<size_t>(n_out));
    for (float& x : qkv) x = dist(rng);
    for (float& x : dout) x = dist(rng);
    std::vector<float> out(static_cast<size_t>(n_out)), att(static_cast<size_t>(n_att)),
        scratch(static_cast<size_t>(n_att));
    std::vector<float> lse(static_cast<size_t>(n_lse)), dqkv(static_cast<size_t>(n_qkv));
    auto old_step = [&] {
      ms::cpu::attention_forward<float>(out.data(), att.data(), qkv.data(), s.B, s.T, s.C, s.NH);
      ms::cpu::attention_backward<float>(dqkv.data(), scratch.data(), dout.data(), qkv.data(),
                                         att.data(), s.B, s.T, s.C, s.NH);
    };
    auto new_step = [&] {
      ms::cpu::flash_attention_forward<float>(out.data(), lse.data(), qkv.data(), s.B, s.T, s.C,
                                              s.NH);
      ms::cpu::flash_attention_backward<float>(dqkv.data(), dout.data(), qkv.data(), out.data(),
                                               lse.data(), s.B, s.T, s.C, s.NH);
    };
    old_step(), new_step();  // warm-up: page in, grow scratch
    double t0 = now();
    new_step();
    const int reps = std::clamp(int(0.2 / std::max(now() - t0, 1e-6)), 1, 200);
    std::vector<double> old_ms, new_ms, ratio;
    for (int r = 0; r < rounds; ++r) {
      // Alternate which runs first, so neither always gets the warmer cache.
      double o = 0, n = 0;
      for (int which = 0; which < 2; ++which) {
        const bool run_old = only_kernel ? only_kernel[0] == 'u' : (which == 0) == (r % 2 == 0);
        t0 = now();
        for (int i = 0; i < reps; ++i) run_old ? old_step() : new_step();
        (run_old ? o : n) = (now() - t0) * 1e3 / reps;
      }
      old_ms.push_back(o), new_ms.push_back(n), ratio.push_back(o / n);
    }
    char label[64], spread[32];
    std::snprintf(label, sizeof label, "%s (%lld, %lld, %lld, %lld)", s.name, (long long)s.B,
                  (long long)s.T, (long long)s.C, (long long)s.NH);
    std::snprintf(spread, sizeof spread, "%.2f..%.2f",
                  *std::min_element(ratio.begin(), ratio.end()),
                  *std::max_element(ratio.begin(), ratio.end()));
    std::printf("%-26s %12.2f %12.2f %8.2f %14s %12lld %12lld\n", label, median(old_ms),
                median(new_ms), median(ratio), spread, (long long)(4 * n_att),
                (long long)(4 * n_lse));
  }
  return 0;
}
