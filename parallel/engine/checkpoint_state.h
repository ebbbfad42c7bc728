// The logical (serial, unsharded) training state behind a checkpoint folder,
// whatever layout wrote it: read_full_state() checks every rank's files and
// rebuilds each parameter and each optimizer moment at its serial shape;
// `minispeed consolidate` writes its weights as one Hugging Face GPT-2 file,
// and load_checkpoint (checkpoint.h) cuts it into the live layout's pieces.
// Not collective: plain file reading.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nn/gpt.h"
#include "optim/loss_scaler.h"
#include "parallel/engine/checkpoint.h"

namespace ms {

// What a rank record may claim at most, checked before anything is sized by it.
inline constexpr int64_t kCheckpointMaxRanks = int64_t{1} << 20;
inline constexpr int64_t kCheckpointMaxDim = int64_t{1} << 31;
inline constexpr uintmax_t kCheckpointMaxRecordBytes = uintmax_t{256} << 20;  // one JSON record

// One rank's JSON record (DIR/TAG/rank_NNNNN.json).
struct RankRecord {
  std::string run_id;  // the save that wrote it (checkpoint_folder.h); COMPLETE records it too
  int rank = 0, world_size = 1;
  int64_t step = 0;
  int64_t skipped_steps = 0;  // mixed precision: overflowed updates (the LR schedule is at step - these)
  CheckpointLayout layout;
  GPTConfig model;
  std::string optimizer;                 // "adamw" | "sgd"
  int64_t optimizer_steps = 0;           // Optimizer::state_steps()
  std::vector<std::string> state_names;  // "exp_avg", "exp_avg_sq" | "momentum_buffer" | none
  std::vector<uint64_t> rng;             // this rank's dropout generators, in module order
  std::optional<LossScalerState> loss_scale;
  std::map<std::string, std::string> config;
  // The pieces in the rank's safetensors file: for each, "<kind>/<name>" holds
  // elements [begin, end) of parameter <name>'s tp shard (local_shape,
  // flattened row-major), for kind "param" and every state name.
  struct Piece {
    std::string name;
    Shape local_shape;
    int64_t begin = 0, end = 0;
  };
  std::vector<Piece> pieces;
};

std::string rank_file_stem(const std::string& tag_dir, int rank);  // ".../rank_00003"
std::string record_to_json(const RankRecord& r);
// `file` names the source in errors; every field is type- and range-checked
// (an ms::Error naming the file, the key, the value and the valid range).
RankRecord record_from_json(const std::string& text, const std::string& file);

struct FullState {
  std::string tag_dir;
  RankRecord saved;  // rank 0's record: step, layout, model, optimizer, config
  std::vector<std::vector<uint64_t>> rng;  // per saved rank
  // Parameter name (model.parameters() order) -> kind ("param", then the
  // optimizer's state names) -> the serial tensor, f32.
  std::vector<std::string> names;
  std::map<std::string, std::map<std::string, Tensor>> tensors;
};

// Reads DIR/TAG (a folder holding COMPLETE and every rank's file pair).
// ms::Error, naming the file and what is wrong, for: no COMPLETE marker, a
// missing or unreadable rank file, malformed JSON, rank files of another save
// run than COMPLETE's (two jobs saving into one folder), a world_size other
// than the number of rank files, a model or optimizer state the tensors do
// not hold (checked against the safetensors headers before anything is sized
// by the JSON), ranks that disagree on the step, layout, model or optimizer, a piece of an unknown tensor or a wrong
// shard shape, a truncated or lying safetensors file (nn/safetensors.h), a
// piece whose size differs from its [begin, end), elements given twice or
// never.
FullState read_full_state(const std::string& tag_dir);

// A GPT-2 of the checkpoint's shape holding its weights (tied wte once), as
// `minispeed consolidate` writes it (GPT::save_safetensors: HF names).
std::shared_ptr<GPT> full_state_model(const FullState& state);

}  // namespace ms
