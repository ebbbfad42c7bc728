// `minispeed sample`: continue a prompt with a trained model.
#include <cstdio>

#include "cli/agree.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "nn/generate.h"

namespace ms {

int sample_command(int argc, char** argv, Communicator& world) {
  Flags f("minispeed sample", "Sample text from trained weights.");
  f.add("weights", "", "the model (.safetensors, e.g. from train --save-weights); required");
  f.add("prompt", "\n", "text to continue");
  f.add("tokens", "300", "bytes to generate");
  f.add("temperature", "0.8", "softmax temperature (0 = greedy)");
  f.add("top-k", "40", "sample among the k most likely bytes (0 = all)");
  f.add("seed", "42", "sampling seed");
  if (!f.parse(argc, argv, 2)) return 0;
  agree_on_flags(world, "sample", f);
  MS_CHECK(!f.str("weights").empty(), "minispeed sample: --weights FILE is required");
  int64_t tokens = f.integer("tokens");
  MS_CHECK(tokens >= 0, "--tokens must be >= 0, got ", tokens);
  auto model = GPT::from_safetensors(f.str("weights"));
  std::string prompt = f.str("prompt");
  std::string text = generate(*model, prompt,
                              {tokens, f.real("temperature"), f.integer("top-k"),
                               static_cast<uint64_t>(f.integer("seed"))});
  std::printf("%s\n", printable_sample(prompt + text).c_str());  // NUL would end "%s"
  return 0;
}

}  // namespace ms
