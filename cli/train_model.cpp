#include "cli/train_model.h"

#include <cstdio>

#include "cli/agree.h"
#include "cli/train_memory_check.h"
#include "parallel/comm/runtime.h"

namespace ms {

std::shared_ptr<GPT> build_train_model(Communicator& world, const Flags& flags,
                                       const TrainConfig& c) {
  const bool lead = world.rank() == 0;
  std::shared_ptr<GPT> model;
  if (!flags.str("init-from").empty()) {
    // The tensors fix vocab, width, depth and positions; a typed flag for one
    // of them must agree. Heads and dropout are not in the tensors: typed
    // flags apply (--n-head must fit the width and any n_head metadata).
    GPT::LoadOptions load;
    if (flags.given("n-head")) load.n_head = flags.integer("n-head");
    load.n_head_name = "--n-head";
    if (flags.given("dropout")) load.dropout = c.dropout;  // validated with the other flags
    if (flags.given("attn-dropout")) load.attn_dropout = c.attn_dropout;
    std::string note;  // printed once every check has passed: errors stay one line
    load.note = [&note](const std::string& s) { note = s; };
    load.warn_non_finite = lead;
    model = GPT::from_safetensors(flags.str("init-from"), load);
    const GPTConfig& got = model->config();
    for (const auto& [flag, value] : {std::pair<const char*, int64_t>{"n-layer", got.n_layer},
                                      std::pair<const char*, int64_t>{"n-embd", got.n_embd}})
      MS_CHECK(!flags.given(flag) || flags.integer(flag) == value, "--", flag, " ",
               flags.integer(flag), " contradicts --init-from's model (", got.describe(), ")");
    MS_CHECK(c.T <= got.block_size, "--seq-len ", c.T,
             " exceeds the positions of --init-from's model (block_size ", got.block_size, ")");
    if (lead && !note.empty()) std::printf("note: %s; --n-head sets it\n", note.c_str());
    check_memory(world, c, model->config());
  } else {
    check_memory(world, c, c.model);  // before allocating: refuse rather than be OOM-killed
    ActivityNote doing("building the model " + c.model.describe());
    model = std::make_shared<GPT>(c.model, static_cast<uint64_t>(c.seed));
  }
  // The file's shape against the layout, in the flags' words (the engine
  // checks the same in the config's).
  on_every_rank(world, [&] {
    const GPTConfig& got = model->config();
    if (c.tp > 1) {
      MS_CHECK(got.n_head % c.tp == 0, "--init-from's model (", got.describe(), ") has n_head ",
               got.n_head, ", which --tp ", c.tp, " does not divide (each tensor-parallel rank ",
               "computes n_head / tp whole heads)");
      MS_CHECK(got.vocab_size % c.tp == 0, "--init-from's model (", got.describe(),
               ") has vocab_size ", got.vocab_size, ", which --tp ", c.tp, " does not divide");
    }
    const int64_t stages = c.pp * c.virtual_stages;
    MS_CHECK(c.pp == 1 || got.n_layer >= stages, "--init-from's model has ", got.n_layer,
             " blocks, fewer than the ", stages, " pipeline stages (--pp ", c.pp,
             " × --virtual-stages ", c.virtual_stages, "): every stage needs at least one block");
    return 0;
  });
  return model;
}

}  // namespace ms
