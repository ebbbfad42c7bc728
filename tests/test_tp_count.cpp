// tp_parameter_count (parallel/tp/tp_gpt.h), what the memory check before
// allocation uses under --tp, against the shards shard_param really cuts.
#include "catch_compat.h"
#include "parallel/tp/shard.h"
#include "parallel/tp/tp_gpt.h"

using namespace ms;

TEST_CASE("tp_parameter_count equals the numel of one tp rank's shards", "[tp]") {
  for (int64_t C : {16, 48}) {
    GPTConfig c;
    c.n_layer = 3, c.n_head = 4, c.n_embd = C, c.block_size = 12;
    GPT serial(c, 1);
    CHECK(tp_parameter_count(c, 1) == serial.num_parameters());
    for (int t : {2, 4}) {
      int64_t want = 0;
      for (const auto& [name, p] : serial.named_parameters())
        want += shard_param(p, tp_split_of(name), t - 1, t, c.n_head, name).numel();
      INFO("n_embd " << C << ", tp " << t);
      CHECK(tp_parameter_count(c, t) == want);
    }
  }
}
