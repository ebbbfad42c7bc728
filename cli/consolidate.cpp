// `minispeed consolidate DIR[/TAG] OUT.safetensors`: one Hugging Face GPT-2
// file from a checkpoint of any layout (DeepSpeed's zero_to_fp32.py, for
// ZeRO, tp and pp alike). The pieces of every rank are put back into serial
// tensors (parallel/engine/checkpoint_state.h) and written with
// GPT::save_safetensors: the tied embedding once, as wte.weight (DeepSpeed
// #1896: zero_to_fp32 once dropped GPT-2's tied lm_head).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "cli/commands.h"
#include "nn/safetensors.h"
#include "parallel/engine/checkpoint.h"
#include "parallel/engine/checkpoint_state.h"
#include "tensor/error.h"

namespace ms {

namespace {

const char* kConsolidateUsage =
    "usage: minispeed consolidate DIR[/TAG] OUT.safetensors\n"
    "  DIR      a --checkpoint-dir: its 'latest' tag is read\n"
    "  DIR/TAG  one checkpoint (a folder holding COMPLETE and rank_NNNNN.{json,safetensors})\n"
    "Writes the weights as one Hugging Face GPT-2 file (tied wte once), whatever dp, tp, pp\n"
    "and ZeRO stage saved them; `minispeed sample --weights` and `train --init-from` read it.\n";

// Refuses an output inside the checkpoint being read (the folder named on the
// command line, and the tag folder it resolves to): writing there would
// replace a rank file or leave a foreign file in the checkpoint. Compared as
// canonical paths, so symbolic links and ".." cannot slip past.
void check_outside_input(const std::string& in, const std::string& tag_dir,
                         const std::string& out) {
  namespace fs = std::filesystem;
  const fs::path target = fs::weakly_canonical(fs::absolute(out));
  for (const std::string& dir : {in, tag_dir}) {
    const fs::path root = fs::weakly_canonical(fs::absolute(dir));
    auto [r, t] = std::mismatch(root.begin(), root.end(), target.begin(), target.end());
    MS_CHECK(r != root.end(), "minispeed consolidate: OUT.safetensors '", out, "' (", target.string(),
             ") is inside the input checkpoint '", dir, "' (", root.string(),
             "): it would overwrite or add to the checkpoint being read; write it elsewhere");
  }
}

}  // namespace

int consolidate_command(int argc, char** argv, Communicator& world) {
  for (int i = 2; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::fputs(kConsolidateUsage, stdout);
      return 0;
    }
  MS_CHECK(argc == 4, "minispeed consolidate: expected DIR[/TAG] and OUT.safetensors, got ",
           argc - 2, " argument(s)\n", kConsolidateUsage);
  MS_CHECK(world.size() == 1, "minispeed consolidate runs in one process (got ", world.size(),
           " ranks): it only reads files");
  namespace fs = std::filesystem;
  const std::string in = argv[2], out = argv[3];
  std::error_code ec;
  // A tag folder holds rank files; a checkpoint directory holds 'latest'.
  const bool is_tag =
      fs::exists(fs::path(in) / "rank_00000.json", ec) || fs::exists(fs::path(in) / "COMPLETE", ec);
  const std::string tag_dir = is_tag ? in : resolve_checkpoint(in, "latest");
  check_outside_input(in, tag_dir, out);
  check_save_path(out);
  const FullState st = read_full_state(tag_dir);
  std::shared_ptr<GPT> model = full_state_model(st);
  if (fs::path(out).has_parent_path()) fs::create_directories(fs::path(out).parent_path());
  model->save_safetensors(out);
  std::printf("consolidated %s (step %lld, saved by %d rank(s): %s) into %s: %s, %lld parameters\n",
              tag_dir.c_str(), static_cast<long long>(st.saved.step), st.saved.world_size,
              st.saved.layout.describe().c_str(), out.c_str(), st.saved.model.describe().c_str(),
              static_cast<long long>(model->num_parameters()));
  return 0;
}

}  // namespace ms
