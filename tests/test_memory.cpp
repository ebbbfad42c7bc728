// The ZeRO paper's memory formula (parallel/zero/memory.h), the counter that
// measures what tensors hold, and the printed tables. The multi-rank check
// that measured memory matches the formula is in tests/mpi/test_zero.cpp.
#include <cmath>

#include "autograd/ops.h"
#include "catch_compat.h"
#include "parallel/zero/memory.h"

using namespace ms;

TEST_CASE("ZeRO memory formula for D = 2 and 4, every stage (fp32 AdamW)", "[memory]") {
  const int64_t psi = 1000;
  // {stage, D, params, grads, optimizer}: 16Ψ, 8Ψ + 8Ψ/D, 4Ψ + 12Ψ/D, 16Ψ/D.
  struct Row {
    int stage, D;
    double params, grads, optimizer, total;
  };
  for (Row r : {Row{0, 2, 4000, 4000, 8000, 16000}, Row{1, 2, 4000, 4000, 4000, 12000},
                Row{2, 2, 4000, 2000, 4000, 10000}, Row{3, 2, 2000, 2000, 4000, 8000},
                Row{0, 4, 4000, 4000, 8000, 16000}, Row{1, 4, 4000, 4000, 2000, 10000},
                Row{2, 4, 4000, 1000, 2000, 7000}, Row{3, 4, 1000, 1000, 2000, 4000}}) {
    MemoryEstimate e = estimate_memory(psi, r.D, r.stage);
    INFO("stage " << r.stage << " D " << r.D);
    CHECK(e.params == r.params);
    CHECK(e.grads == r.grads);
    CHECK(e.optimizer == r.optimizer);
    CHECK(e.total() == r.total);
  }
  CHECK(estimate_memory(psi, 4, 1).formula() == "4Ψ + 4Ψ + 8Ψ/D");
  CHECK(estimate_memory(psi, 4, 2).formula() == "4Ψ + (4+8)Ψ/D");
  CHECK(estimate_memory(psi, 4, 3).formula() == "(4+4+8)Ψ/D");
  // SGD with momentum keeps 4 bytes per parameter.
  CHECK(estimate_memory(psi, 2, 1, 4).total() == 4000 + 4000 + 2000);
  // D = 1: every stage is plain training.
  for (int stage = 0; stage <= 3; ++stage) CHECK(estimate_memory(psi, 1, stage).total() == 16000);
}

TEST_CASE("ZeRO formula: the paper's 7.5B-parameter example scale", "[memory]") {
  // Paper, Figure 1 uses mixed precision (2+2+12 bytes); in fp32 AdamW the
  // stage-3 bytes per rank on 64 GPUs are 16Ψ/64 = Ψ/4: 1.875 GB for 7.5B.
  MemoryEstimate e = estimate_memory(7'500'000'000, 64, 3);
  CHECK(std::fabs(e.total() - 1.875e9) < 1);
  CHECK(std::fabs(estimate_memory(7'500'000'000, 64, 0).total() - 120e9) < 1);
}

TEST_CASE("ZeRO formula errors", "[memory]") {
  CHECK_THROWS_WITH(estimate_memory(10, 2, 4),
                    Catch::Contains("stage 4") && Catch::Contains("valid"));
  CHECK_THROWS_WITH(estimate_memory(10, 0, 1), Catch::Contains("dp 0"));
}

TEST_CASE("MemoryCounter counts each storage once", "[memory]") {
  Tensor flat = zeros({100});  // 400 bytes
  Tensor a = narrow(flat, 0, 0, 50), b = narrow(flat, 0, 50, 50);
  Tensor other = zeros({10});  // 40 bytes
  MemoryCounter c;
  c.add(MemoryCounter::Params, a);
  c.add(MemoryCounter::Params, b);    // same storage: not again
  c.add(MemoryCounter::Grads, flat);  // already counted as Params
  c.add(MemoryCounter::Grads, other);
  c.add(MemoryCounter::Buffers, Tensor());  // undefined: nothing
  CHECK(c.bytes(MemoryCounter::Params) == 400);
  CHECK(c.bytes(MemoryCounter::Grads) == 40);
  CHECK(c.total() == 440);
}

TEST_CASE("memory tables print the formula and the measured columns", "[memory]") {
  std::string formula = format_memory_formula_table(1000, {2, 4});
  CHECK_THAT(formula, Catch::Contains("(4+4+8)Ψ/D") && Catch::Contains("16,000") &&
                          Catch::Contains("4,000") && Catch::Contains("0.250x"));
  std::vector<MemoryReport> reports(2);
  for (int r = 0; r < 2; ++r) {
    reports[r].rank = r;
    reports[r].predicted = estimate_memory(1000, 2, 2);
    reports[r].params = 4000, reports[r].grads = 2000, reports[r].optimizer = 4000;
    reports[r].layout = 10000, reports[r].peak = 12345;
  }
  std::string table = format_memory_table(reports);
  CHECK_THAT(table, Catch::Contains("ZeRO stage 2, D = 2") && Catch::Contains("4Ψ + (4+8)Ψ/D") &&
                        Catch::Contains("10,000") && Catch::Contains("12,345"));
  CHECK(format_bytes(1234567) == "1,234,567");
  CHECK(format_bytes(-1234) == "-1,234");
  CHECK(format_bytes(12) == "12");
}
