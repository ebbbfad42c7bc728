// How the pipeline runtime cuts the GPT into stages (parallel/pp/pipeline_engine.h):
// blocks uniformly with the remainder to the early stages, the embedding on
// the first stage, ln_f on the last, wte on both (the last holding the tied
// copy); and the pp traffic formula (parallel/pp/traffic.h).
#include "nn/gpt.h"
#include "parallel/pp/pipeline_engine.h"
#include "parallel/pp/traffic.h"
#include "tests/catch_compat.h"

using namespace ms;

TEST_CASE("stage_layers: uniform, the remainder to the early stages", "[pp][pp_stages]") {
  std::vector<std::pair<int64_t, int64_t>> got;
  for (int s = 0; s < 4; ++s) {
    pp::LayerRange r = pp::stage_layers(10, 4, s);
    got.emplace_back(r.begin, r.end);
  }
  CHECK(got == std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {3, 6}, {6, 8}, {8, 10}});
  CHECK(pp::stage_layers(4, 4, 3).begin == 3);
  CHECK(pp::stage_layers(4, 4, 3).end == 4);
  CHECK_THROWS_WITH(pp::stage_layers(3, 4, 0), Catch::Contains("--n-layer 3 is fewer than the 4"));
}

TEST_CASE("stage_params: who trains each parameter", "[pp][pp_stages]") {
  GPTConfig c;
  c.n_layer = 5, c.n_head = 2, c.n_embd = 8, c.block_size = 4;
  GPT model(c, 1);
  std::vector<std::string> names;
  for (const auto& [n, t] : model.named_parameters()) names.push_back(n);
  auto owned_by = [&](const std::string& name, int p, int v) {
    std::vector<int> ranks;
    for (int r = 0; r < p; ++r) {
      pp::StageParams sp = pp::stage_params(names, c.n_layer, p, v, r);
      for (size_t i = 0; i < names.size(); ++i)
        if (names[i] == name && sp.owned[i]) ranks.push_back(r);
    }
    return ranks;
  };
  CHECK(owned_by("wte.weight", 2, 1) == std::vector<int>{0, 1});
  CHECK(owned_by("wpe.weight", 2, 1) == std::vector<int>{0});
  CHECK(owned_by("ln_f.weight", 2, 1) == std::vector<int>{1});
  CHECK(owned_by("h.2.attn.c_attn.weight", 2, 1) == std::vector<int>{0});  // 3 + 2 blocks
  CHECK(owned_by("h.3.mlp.c_fc.bias", 2, 1) == std::vector<int>{1});
  // Interleaved, p 2 × v 2: virtual stages 0..3 hold blocks {0,1} {2} {3} {4};
  // virtual stage s lives on rank s % p.
  CHECK(owned_by("h.2.ln_1.weight", 2, 2) == std::vector<int>{1});
  CHECK(owned_by("h.3.ln_1.weight", 2, 2) == std::vector<int>{0});
  CHECK(owned_by("h.4.ln_1.weight", 2, 2) == std::vector<int>{1});
  // Only the last stage's wte is a tied copy (counted once in the norm).
  for (int r = 0; r < 2; ++r) {
    pp::StageParams sp = pp::stage_params(names, c.n_layer, 2, 1, r);
    for (size_t i = 0; i < names.size(); ++i)
      CHECK(sp.tied_copy[i] == (r == 1 && names[i] == "wte.weight"));
  }
  // One stage: everything, nothing tied.
  pp::StageParams one = pp::stage_params(names, c.n_layer, 1, 1, 0);
  CHECK(std::count(one.owned.begin(), one.owned.end(), true) == int(names.size()));
  CHECK(std::count(one.tied_copy.begin(), one.tied_copy.end(), true) == 0);
}

TEST_CASE("pp traffic formula: 2(p·v − 1)·m·n plus the tied gradient", "[pp][pp_stages]") {
  const int64_t n = 2 * 3 * 4 * 4;  // B·T·C·4
  StepFormula f = pp_step_formula(
      {.B = 2, .T = 3, .C = 4, .micro_batches = 5, .pp = 4, .virtual_stages = 1, .tied_numel = 10});
  CHECK(f.total[CommOp::Send].sent == 2 * 3 * 5 * n + 2 * 40);
  REQUIRE(f.per_rank.size() == 4);
  CHECK(f.per_rank[0][CommOp::Send].sent == 5 * n + 40);  // activations only, + tied
  CHECK(f.per_rank[1][CommOp::Send].sent == 10 * n);      // both directions
  CHECK(f.per_rank[3][CommOp::Send].sent == 5 * n + 40);  // gradients only, + tied
  // Interleaving: v times the boundaries, less one.
  StepFormula g = pp_step_formula(
      {.B = 2, .T = 3, .C = 4, .micro_batches = 4, .pp = 2, .virtual_stages = 2, .tied_numel = 0});
  CHECK(g.total[CommOp::Send].sent == 2 * 3 * 4 * n);
}
