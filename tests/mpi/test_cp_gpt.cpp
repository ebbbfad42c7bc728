// The GPT under context parallelism (parallel/cp/cp_gpt.h) against the serial
// GPT of the same seed, at cp = 2 and 4, for every algorithm, with residual,
// embedding and attention dropout on: the loss (the mean of the ranks' means)
// and every parameter's gradient (averaged over cp, as ZeroOptimizer does over
// dp × cp). Then the positions a rank keeps, and the memory line's claim that
// Ulysses keeps the T² scores for backward and the ring does not.
#include <string>
#include <vector>

#include "nn/gpt.h"
#include "parallel/cp/cp_gpt.h"
#include "parallel/cp/cp_report.h"
#include "tests/catch_compat.h"
#include "tests/mpi/test_tp_common.h"

using namespace ms;
using namespace ms::test;

namespace {

constexpr int64_t B = 2, T = 16;

GPTConfig tiny() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 4, c.n_embd = 16, c.block_size = T, c.vocab_size = 256;
  c.dropout = 0.1, c.attn_dropout = 0.1;
  return c;
}

Tensor tokens(uint64_t seed) {
  return seeded_tokens(B, T, seed);
}

}  // namespace

TEST_CASE("cp GPT: loss and every gradient equal the serial GPT's, dropout on, every algorithm",
          "[mpi][cp][cp_gpt]") {
  Communicator world = Communicator::world();
  const GPTConfig cfg = tiny();
  const Tensor idx = tokens(1), targets = tokens(2);
  GPT serial(cfg, 42);
  Tensor loss = serial.loss(idx, targets);
  loss.backward();
  for (int c : tp_sizes(world)) {  // 2 and 4 where they divide the world
    Communicator cp = tp_group(world, c);
    for (const char* algo : {"ulysses", "ring", "zigzag", "allgather"}) {
      INFO("cp " << c << " (" << algo << "), cp rank " << cp.rank());
      CpGPT m(std::make_shared<GPT>(cfg, 42), nullptr, cp, algo);
      Tensor mine = m.loss(idx, targets);  // this rank's B·T/C tokens
      mine.backward();
      Tensor mean = full({1}, mine.item(), DType::F64);
      cp.all_reduce(mean, ReduceOp::Avg);
      CHECK(std::fabs(mean.item() - loss.item()) < 1e-5);
      for (const auto& [name, p] : m.gpt().named_parameters()) {
        Tensor g = clone(p.grad());
        cp.all_reduce(g, ReduceOp::Avg);
        Tensor want = serial.parameter(name).grad();
        INFO(name);
        CHECK(max_diff(g, want) <= 1e-5 * max_diff(want, zeros_like(want)));
      }
    }
  }
}

TEST_CASE("cp GPT: a rank keeps its positions (zig-zag: chunks r and 2C-1-r)",
          "[mpi][cp][cp_gpt]") {
  Communicator world = Communicator::world();
  if (world.size() % 2 != 0) return;
  Communicator cp = tp_group(world, 2);
  CpGPT zig(std::make_shared<GPT>(tiny(), 42), nullptr, cp, "zigzag");
  const std::vector<int64_t> want0 = {0, 1, 2, 3, 12, 13, 14, 15},
                             want1 = {4, 5, 6, 7, 8, 9, 10, 11};
  CHECK(zig.positions(T) == (cp.rank() == 0 ? want0 : want1));
  const Tensor idx = tokens(3);
  const Tensor kept = zig.keep_positions(idx, T);  // (B, T/2)
  REQUIRE(kept.shape() == Shape{B, T / 2});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < T / 2; ++i)
      CHECK(kept.host_data<int32_t>()[b * T / 2 + i] ==
            idx.host_data<int32_t>()[b * T + zig.positions(T)[size_t(i)]]);
}

TEST_CASE("cp memory line: what one attention call keeps equals its formula, and no T² scores",
          "[mpi][cp][cp_gpt]") {
  Communicator world = Communicator::world();
  if (world.size() % 2 != 0) return;
  Communicator cp = tp_group(world, 2);
  // B 1, T 64, 4 heads of width 8 (Cl 32): Ulysses' scores would be 1·2·64²·4 = 32,768 bytes.
  auto kept = [&](const char* algo) {
    const std::string line = cp_memory_report(cp, algo, 1, 64, 4, 32);
    const std::string key = "; measured ";
    const size_t at = line.find(key);
    REQUIRE(at != std::string::npos);
    std::string digits;
    for (size_t i = at + key.size(); i < line.size() && line[i] != ' '; ++i)
      if (line[i] != ',') digits += line[i];
    return std::stoll(digits);
  };
  for (const char* algo : {"ulysses", "ring", "zigzag", "allgather"}) {
    const long long measured = kept(algo);
    INFO(algo << " keeps " << measured << " bytes");
    CHECK(measured == 4 * cp_attention_kept(algo, 64, 2, 4, 32).elements);
  }
  CHECK(kept("ulysses") < 32768);  // the blocked kernel: no (H/C)·T² term
  CHECK(kept("ring") < kept("ulysses"));
}
