// Training checkpoints: save at one layout, resume bit-exactly at the same
// one or at another (dp, tp, pp, ZeRO stage), consolidate into one Hugging
// Face GPT-2 file.
//
// On disk (DeepSpeed's shape, engine.py::save_checkpoint, with one file pair
// per rank instead of per-stage file kinds):
//   DIR/latest                       the newest complete tag (text)
//   DIR/TAG/rank_00003.safetensors   rank 3's pieces: "param/<name>",
//                                    "exp_avg/<name>", ... as flat f32 runs
//   DIR/TAG/rank_00003.json          step, layout, model shape, optimizer,
//                                    dropout RNG states, loss scale, config,
//                                    and where each piece lies (below)
//   DIR/TAG/COMPLETE                 written last, by rank 0, once every rank
//                                    reported its files written (llm.c's DONE
//                                    marker): a tag without it is refused
//   DIR/.lock                        flocked by rank 0 while it saves
// A save is written in DIR/TAG.tmp-<run id>/ and renamed into place
// (checkpoint_folder.h): a complete copy is never deleted before its
// replacement is complete. The run id, drawn by rank 0, is in every rank's
// JSON and in COMPLETE; a folder whose files disagree is refused.
// What is saved is the optimizer's tensors (fp32 master weights under mixed
// precision) and their state, never the model's copies: they are the source
// of truth the model's parameters follow from.
//
// Each piece names its logical place: parameter <name>, cut for tp rank t by
// shard.h's rule, elements [begin, end) of that shard flattened. A piece is
// saved by one rank only (dp rank 0 under stage 0, tp rank 0 for replicated
// tensors, the first stage for the pipeline's tied wte), so the pieces of a
// complete checkpoint tile every tensor exactly once — which is what lets
// read_full_state() check a hostile or damaged checkpoint element by element,
// and rebuild the serial state from any layout. DeepSpeed needs a separate
// offline conversion for that ("universal checkpoints", ds_to_universal.py);
// its ZeRO resume at a new dp size fails with "Automatic adjustment of ZeRO's
// optimizer state partitioning with a new world size is not currently
// supported".
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nn/gpt.h"
#include "optim/loss_scaler.h"
#include "parallel/comm/communicator.h"
#include "parallel/zero/zero_optimizer.h"

namespace ms {

// The run's layout, as the mesh (parallel/mesh.h) and the engine see it.
struct CheckpointLayout {
  int dp = 1, tp = 1, pp = 1, zero_stage = 0, virtual_stages = 1;
  bool sequence_parallel = false;
  int dp_rank = 0, tp_rank = 0, pp_rank = 0;
  // Context parallelism: its ranks hold replicated parameters and ZeRO
  // partitions over dp × cp, so to the checkpoint they are data-parallel
  // ranks: `dp` counts dp × cp and dp_rank is the dp×cp rank. `cp` records
  // how many of them were one replica's sequence shards (for the record; a
  // checkpoint loads at any cp, as at any dp).
  int cp = 1;
  std::string describe() const;  // "dp 2 × tp 1 × pp 1, ZeRO stage 1"
};

// What save and load need from the live run. `model` is this rank's model
// object (tp shard shapes under tp; every rank holds the whole object under
// pp); `tied_copy` (pp only, per model.parameters() index) marks the copy of
// the tied wte a later stage also trains, which is not saved twice.
struct CheckpointTarget {
  Communicator& world;
  GPT& model;
  ZeroOptimizer& optimizer;
  CheckpointLayout layout;
  std::vector<bool> tied_copy;  // empty: none
  // Expert parallelism (parallel/ep/): this rank's experts' optimizer, over
  // the expert-dp group where this rank is `expert_dp_rank`. Its pieces are
  // saved under the experts' serial names (h.N.mlp.experts.E.*) like any
  // other, so a checkpoint tiles every tensor once and loads at any ep.
  ZeroOptimizer* expert_optimizer = nullptr;
  int expert_dp_rank = 0;
};

// What resumes with the weights.
struct CheckpointMeta {
  int64_t step = 0;  // optimizer steps done: the data position and the LR schedule follow
  int64_t skipped_steps = 0;  // of those, skipped on overflow (mixed precision)
  std::optional<LossScalerState> loss_scale;  // fp16 runs
  std::map<std::string, std::string> config;  // the run's settings, for the record
};

// Collective over target.world; every rank must call it. Writes DIR/TAG
// (default tag: DeepSpeed's "global_step<N>"), then COMPLETE and DIR/latest.
// Any rank's failure is the same ms::Error on every rank, and leaves the
// earlier copy of TAG (if any) in place. Returns the tag directory.
std::string save_checkpoint(const std::string& dir, const std::string& tag,
                            CheckpointTarget& target, const CheckpointMeta& meta);

// Collective over target.world. `tag` "latest" reads DIR/latest. Loads the
// checkpoint into the model and the optimizer whatever layout saved it (the
// ZeRO slices, tp shards and pp stages are re-cut for this one) and puts back
// this rank's dropout RNG states (same layout: its own; another layout:
// saved rank 0's, which every rank of an unsharded run holds alike). Errors
// (missing, truncated or hostile files, another model shape, an optimizer of
// another kind, an incomplete save) are the same ms::Error on every rank.
CheckpointMeta load_checkpoint(const std::string& dir, const std::string& tag,
                               CheckpointTarget& target);

// "DIR/TAG" for a tag, or DIR/latest's tag for "latest"; checks that the
// folder exists. After a save killed mid-swap, the complete staged or
// set-aside copy of the tag (checkpoint_folder.h: find_tag_dir). Not
// collective.
std::string resolve_checkpoint(const std::string& dir, const std::string& tag);

}  // namespace ms
