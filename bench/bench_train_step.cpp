// One training step of our GPT beside PyTorch eager (bench/torch_gpt.py), same
// model, same batches, same optimizer, same run, at 1 and 2 threads.
//
//   bench_train_step                 warm-up 3, then 10 timed steps per thread count
//   bench_train_step --steps N       N timed steps (warm-up stays 3)
//   bench_train_step --quick         warm-up 1, 3 timed steps (CI smoke)
//   bench_train_step --no-torch      ours only
//   bench_train_step --threads N     only N threads (default: 1, then 2)
//   bench_train_step --wait-policy default   keep libgomp's default spin-then-sleep waiting
//
// OpenMP wait policy. Unless OMP_WAIT_POLICY is already set, the benchmark
// re-executes itself with OMP_WAIT_POLICY=PASSIVE (libgomp reads it once, at
// load time), and the PyTorch child inherits the same environment. On the 2-vCPU
// VM this was written on, idle OpenMP threads spinning between parallel regions
// cost ours ~1.4x and PyTorch ~2x at 2 threads (Debian's torch also runs an
// OpenBLAS pthread pool beside its OpenMP pool, and the spinning pool starves it),
// while 1 thread is unaffected. The policy in effect is printed; pass
// --wait-policy default (or set OMP_WAIT_POLICY yourself) to measure another.
//
// Model: GPT-2, L=4, H=4, C=256, T=128, V=256 (bytes), batch B=16, f32.
// Step:  optimizer.zero_grad(); loss = model.loss(x, y); loss.backward(); optimizer.step()
//        with AdamW(lr 1e-3, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on every parameter).
// The step time reported is the median over the timed steps (best shown beside it);
// a shared machine makes the mean swing with other processes.
//
// Model FLOPs per step (nanoGPT's estimate_mfu / PaLM appendix B convention):
//   6 · N · tokens  +  L · 3 · (2·B·T²·C [q·kᵀ] + 2·B·T²·C [att·v])
// with tokens = B·T and N = all parameters except the position embedding wpe.
// wte is kept in N because it is also the (tied) LM head, whose matmul is real
// work; the embedding lookups themselves are free. Attention counts the full T×T,
// as PaLM's model-FLOPs convention does; our kernel skips the key blocks above
// the diagonal (67% of T×T computed at T = 128), so this counts ~1.1 of the
// ~42.7 GFLOP that it does not execute (~2.5%). Kaplan et al.'s non-embedding N
// (wte excluded too) is printed for reference.
//
// The FLOP/s fraction divides that by our own gemm_f32's GFLOP/s, measured in this
// run at the same thread count (best of several calls, before and after our steps)
// on the model's c_attn shape 2048×768×256 (M = B·T, N = 3C, K = C) and on 1024³.
#include <omp.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench/torch_peer.h"
#include "nn/data.h"
#include "nn/gpt.h"
#include "optim/optimizer.h"
#include "tensor/cpu/gemm.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

constexpr int64_t kB = 16, kT = 128, kL = 4, kH = 4, kC = 256, kV = 256;

struct StepResult {
  double med_ms = 0, best_ms = 0, cpu_ms = 0, first_loss = 0, last_loss = 0;
  // Medians of the step's phases: zero_grad + forward + loss, backward, optimizer
  // step. Communication is zero here (one process: no gradient all-reduce); the
  // column is printed so this table reads like the data-parallel one.
  double fwd_ms = 0, bwd_ms = 0, opt_ms = 0;
};

// Process CPU time (all threads). At 1 thread, wall >> CPU means other
// processes took the core: the wall-clock numbers of that run are inflated.
double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// The 1-minute load average, so a report can say how busy the machine was.
std::string loadavg() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return "?";
  char buf[64] = {};
  if (!std::fgets(buf, sizeof buf, f)) buf[0] = 0;
  std::fclose(f);
  std::string s(buf);
  return s.substr(0, s.find(' '));
}

// Fresh model and optimizer per thread count, so both counts run the same steps.
StepResult time_steps(const ms::TokenData& data, int warmup, int steps) {
  ms::GPTConfig cfg;
  cfg.vocab_size = kV;
  cfg.block_size = kT;
  cfg.n_layer = kL;
  cfg.n_head = kH;
  cfg.n_embd = kC;
  ms::GPT model(cfg, 1337);
  ms::AdamW opt(model.parameters(), 1e-3, 0.9, 0.95, 1e-8, 0.1);
  std::vector<double> ms_per_step, cpu_ms_per_step, fwd, bwd, upd;
  StepResult r;
  for (int s = 0; s < warmup + steps; ++s) {
    ms::Batch b = data.train_batch(s, 0, 1, kB, kT);
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    opt.zero_grad();
    ms::Tensor loss = model.loss(b.x, b.y);
    const double t_fwd = seconds_since(t0) * 1e3;
    loss.backward();
    const double t_bwd = seconds_since(t0) * 1e3;
    opt.step();
    const double dt = seconds_since(t0) * 1e3;
    const double dc = (cpu_seconds() - c0) * 1e3;
    const double l = loss.item();
    if (s == 0) r.first_loss = l;
    r.last_loss = l;
    if (s >= warmup) {
      ms_per_step.push_back(dt), cpu_ms_per_step.push_back(dc);
      fwd.push_back(t_fwd), bwd.push_back(t_bwd - t_fwd), upd.push_back(dt - t_bwd);
    }
  }
  r.fwd_ms = median(fwd), r.bwd_ms = median(bwd), r.opt_ms = median(upd);
  r.med_ms = median(ms_per_step);
  r.cpu_ms = median(cpu_ms_per_step);
  r.best_ms = *std::min_element(ms_per_step.begin(), ms_per_step.end());
  return r;
}

// Best GFLOP/s of gemm_f32 (NN, row-major) over repetitions filling ~budget seconds.
double gemm_gflops(int64_t M, int64_t N, int64_t K, double budget) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> A(size_t(M) * K), B(size_t(K) * N), C(size_t(M) * N);
  for (float& x : A) x = dist(rng);
  for (float& x : B) x = dist(rng);
  auto call = [&] {
    ms::cpu::gemm_f32(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
  };
  call();  // warm-up: page in, grow packing scratch, wake threads
  auto t0 = Clock::now();
  call();
  double best = seconds_since(t0);
  const int reps = std::clamp(int(budget / std::max(best, 1e-6)), 3, 200);
  for (int r = 0; r < reps; ++r) {
    t0 = Clock::now();
    call();
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * double(M) * double(N) * double(K) / best * 1e-9;
}

bool file_exists(const std::string& p) {
  FILE* f = std::fopen(p.c_str(), "rb");
  if (f) std::fclose(f);
  return f != nullptr;
}

// Finds a repository file from the repo root (scripts/bench.sh) or next to the binary.
std::string find_repo_file(const std::string& rel, const char* argv0) {
  if (file_exists(rel)) return rel;
  std::string exe(argv0);
  const size_t slash = exe.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : exe.substr(0, slash);
  for (const std::string up : {"/../../", "/../"})
    if (file_exists(dir + up + rel)) return dir + up + rel;
  return rel;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 10, warmup = 3;
  double gemm_budget = 0.3;
  bool torch_on = true;
  bool passive = true;
  std::vector<int> thread_counts{1, 2};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      steps = 3, warmup = 1, gemm_budget = 0.1;
    } else if (std::strcmp(argv[i], "--steps") == 0 && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
      steps = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc &&
               std::atoi(argv[i + 1]) > 0) {
      thread_counts = {std::atoi(argv[++i])};
    } else if (std::strcmp(argv[i], "--wait-policy") == 0 && i + 1 < argc &&
               (std::strcmp(argv[i + 1], "passive") == 0 ||
                std::strcmp(argv[i + 1], "default") == 0)) {
      passive = std::strcmp(argv[++i], "passive") == 0;
    } else if (std::strcmp(argv[i], "--no-torch") == 0) {
      torch_on = false;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--steps N] [--quick] [--no-torch] [--threads N] "
                   "[--wait-policy passive|default]\n",
                   argv[0]);
      return 2;
    }
  }
  // libgomp has parsed the environment before main: changing the policy takes a re-exec.
  const char* policy_env = std::getenv("OMP_WAIT_POLICY");
  if (passive && !policy_env) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    setenv("MS_BENCH_SET_WAIT_POLICY", "1", 1);
    execv("/proc/self/exe", argv);
    unsetenv("OMP_WAIT_POLICY");  // exec failed: carry on with libgomp's default
    unsetenv("MS_BENCH_SET_WAIT_POLICY");
    policy_env = nullptr;
  }
  const std::string policy =
      !policy_env ? "unset (libgomp default: spin a while, then sleep)"
      : std::getenv("MS_BENCH_SET_WAIT_POLICY")
          ? "PASSIVE (set by this benchmark; --wait-policy default to keep libgomp's)"
          : std::string(policy_env) + " (from the environment)";
  const std::string data_path = find_repo_file("data/tinyshakespeare.txt", argv[0]);
  const std::string script = find_repo_file("bench/torch_gpt.py", argv[0]);
  const ms::TokenData data = ms::TokenData::load(data_path);

  // Parameter counts and model FLOPs (see the header comment).
  ms::GPTConfig cfg;
  cfg.vocab_size = kV, cfg.block_size = kT, cfg.n_layer = kL, cfg.n_head = kH, cfg.n_embd = kC;
  const int64_t n_total = ms::GPT(cfg, 1).num_parameters();
  const int64_t n_wpe = kT * kC, n_wte = kV * kC;
  const int64_t n_flop = n_total - n_wpe;            // counts the tied head
  const int64_t n_kaplan = n_total - n_wpe - n_wte;  // non-embedding
  const double tokens = double(kB * kT);
  const double attn_flops = double(kL) * 3.0 * (2.0 + 2.0) * kB * double(kT) * kT * kC;
  const double step_flops = 6.0 * double(n_flop) * tokens + attn_flops;

  std::printf("GPT %s, B=%lld, %lld tokens/step, f32, AdamW(lr 1e-3, betas 0.9/0.95, wd 0.1)\n",
              cfg.describe().c_str(), (long long)kB, (long long)tokens);
  std::printf("parameters: %lld total; N = total - wpe = %lld (Kaplan non-embedding: %lld)\n",
              (long long)n_total, (long long)n_flop, (long long)n_kaplan);
  std::printf("model FLOPs/step = 6*N*B*T + L*3*(2+2)*B*T^2*C = %.3g + %.3g = %.3f GFLOP\n",
              6.0 * double(n_flop) * tokens, attn_flops, step_flops * 1e-9);
  std::printf("OMP_WAIT_POLICY: %s\n", policy.c_str());
  std::printf("gemm_f32 micro-kernel: %s; %d warm-up + %d timed steps; ms/step = median (best)\n",
              ms::cpu::gemm_f32_isa(), warmup, steps);

  std::optional<std::string> py;
  if (torch_on) {
    py = find_torch_python();
    if (!py)
      std::printf(
          "PyTorch not available: skipped (install python3-torch; tried /usr/bin/python3, "
          "python3)\n");
  }
  if (py)
    std::printf(
        "PyTorch child: OPENBLAS_CORETYPE=%s, OPENBLAS/OMP/MKL_NUM_THREADS = threads\n",
        openblas_coretype().empty() ? "(OpenBLAS's own detection)" : openblas_coretype().c_str());
  std::printf("load average (1 min) at start: %s on %d CPUs\n\n", loadavg().c_str(),
              omp_get_num_procs());
  std::fflush(stdout);

  struct Row {
    int threads;
    StepResult ours;
    std::optional<TorchResult> torch;
    double g_model, g_cube;
  };
  std::vector<Row> rows;
  for (int threads : thread_counts) {
    omp_set_num_threads(threads);
    Row row{threads, {}, std::nullopt, 0, 0};
    // GEMM speed before and after our steps, keeping the better: one burst of
    // other load during a short measurement would otherwise inflate the fraction.
    row.g_model = gemm_gflops(kB * kT, 3 * kC, kC, gemm_budget);
    row.g_cube = gemm_gflops(1024, 1024, 1024, gemm_budget);
    row.ours = time_steps(data, warmup, steps);
    row.g_model = std::max(row.g_model, gemm_gflops(kB * kT, 3 * kC, kC, gemm_budget));
    row.g_cube = std::max(row.g_cube, gemm_gflops(1024, 1024, 1024, gemm_budget));
    std::printf(
        "[%d thread%s] ours: %.1f ms/step (best %.1f; CPU %.1f ms/step), loss %.4f -> %.4f"
        "; load %s\n",
        threads, threads > 1 ? "s" : "", row.ours.med_ms, row.ours.best_ms, row.ours.cpu_ms,
        row.ours.first_loss, row.ours.last_loss, loadavg().c_str());
    std::fflush(stdout);
    if (py) {
      row.torch = run_torch(*py, script, data_path, threads, warmup, steps);
      if (row.torch) {
        std::printf("[%d thread%s] PyTorch: %.1f ms/step (best %.1f)\n%s", threads,
                    threads > 1 ? "s" : "", row.torch->med_ms, row.torch->best_ms,
                    row.torch->info.c_str());
      }
      std::fflush(stdout);
    }
    rows.push_back(row);
  }

  std::printf("load average (1 min) at end: %s\n", loadavg().c_str());
  std::printf("\ntraining step (ratio = PyTorch ms / ours ms; > 1 means ours is faster)\n");
  std::printf("%7s %16s %16s %7s %12s %12s\n", "threads", "ours ms (best)", "torch ms (best)",
              "ratio", "ours tok/s", "torch tok/s");
  for (const Row& r : rows) {
    char ours[32], torch[32], ratio[16], ttok[16];
    std::snprintf(ours, sizeof ours, "%.1f (%.1f)", r.ours.med_ms, r.ours.best_ms);
    std::snprintf(torch, sizeof torch, "-");
    std::snprintf(ratio, sizeof ratio, "-");
    std::snprintf(ttok, sizeof ttok, "-");
    if (r.torch) {
      std::snprintf(torch, sizeof torch, "%.1f (%.1f)", r.torch->med_ms, r.torch->best_ms);
      std::snprintf(ratio, sizeof ratio, "%.2f", r.torch->med_ms / r.ours.med_ms);
      std::snprintf(ttok, sizeof ttok, "%.0f", tokens / (r.torch->med_ms * 1e-3));
    }
    std::printf("%7d %16s %16s %7s %12.0f %12s\n", r.threads, ours, torch, ratio,
                tokens / (r.ours.med_ms * 1e-3), ttok);
  }

  std::printf("\nours: where a step goes (medians, ms; communication 0: one process)\n");
  std::printf("%7s %9s %9s %9s %14s %9s\n", "threads", "forward", "backward", "optimizer",
              "communication", "step");
  for (const Row& r : rows) {
    std::printf("%7d %9.1f %9.1f %9.1f %14.1f %9.1f\n", r.threads, r.ours.fwd_ms, r.ours.bwd_ms,
                r.ours.opt_ms, 0.0, r.ours.med_ms);
    if (r.torch && r.torch->fwd_ms >= 0)
      std::printf("%7s %9.2f %9.2f %9.2f %14s %9.2f   <- ratio PyTorch / ours\n", "",
                  r.torch->fwd_ms / r.ours.fwd_ms, r.torch->bwd_ms / r.ours.bwd_ms,
                  r.torch->opt_ms / r.ours.opt_ms, "-", r.torch->med_ms / r.ours.med_ms);
  }

  std::printf("\nours: model FLOP/s vs our gemm_f32 at the same thread count (same run)\n");
  std::printf("%7s %14s %18s %7s %14s %7s\n", "threads", "model GFLOP/s", "gemm 2048x768x256",
              "frac", "gemm 1024^3", "frac");
  for (const Row& r : rows) {
    const double g = step_flops / (r.ours.med_ms * 1e-3) * 1e-9;
    std::printf("%7d %14.1f %18.1f %6.0f%% %14.1f %6.0f%%\n", r.threads, g, r.g_model,
                100.0 * g / r.g_model, r.g_cube, 100.0 * g / r.g_cube);
  }
  return 0;
}
