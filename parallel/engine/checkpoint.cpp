#include "parallel/engine/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/atomic_save.h"
#include "nn/checkpointed_block.h"  // dropout_generators
#include "nn/safetensors.h"
#include "parallel/comm/staging.h"  // copy_host_into_device
#include "parallel/comm/runtime.h"
#include "parallel/engine/checkpoint_folder.h"
#include "parallel/engine/checkpoint_state.h"
#include "parallel/tp/shard.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace ms {

namespace fs = std::filesystem;

namespace {

// Collective: `text` as rank `root` holds it, on every rank.
std::string broadcast_text(Communicator& world, const std::string& text, int root) {
  if (world.size() == 1) return text;
  Tensor len = from_vector(std::vector<int32_t>{static_cast<int32_t>(text.size())}, {1});
  world.broadcast(len, root);
  std::vector<int32_t> chars(text.begin(), text.end());
  chars.resize(static_cast<size_t>(len.item()));
  if (chars.empty()) return "";
  Tensor t = from_vector(chars, {static_cast<int64_t>(chars.size())});
  world.broadcast(t, root);
  std::string out;
  for (double c : t.to_vector()) out += static_cast<char>(c);
  return out;
}

// Collective. Every rank learns whether any failed; if so, all throw the
// lowest failing rank's message (so no rank is left waiting in the next
// collective, and none resumes when another could not).
void agree(Communicator& world, const std::string& error) {
  if (world.size() == 1) {
    if (!error.empty()) throw Error(error);
    return;
  }
  const int n = world.size();
  Tensor mine = from_vector(std::vector<int32_t>{error.empty() ? 0 : 1}, {1});
  Tensor all = from_vector(std::vector<int32_t>(n, 0), {n});
  world.all_gather(mine, all);
  const std::vector<double> f = all.to_vector();
  int first = -1, count = 0;
  for (int r = 0; r < n; ++r)
    if (f[r] != 0) count += 1, first = first < 0 ? r : first;
  if (count == 0) return;
  const std::string message = broadcast_text(world, error, first);
  throw AgreedError(str_cat(message, " (on rank ", first,
                            count > 1 ? str_cat(" and ", count - 1, " other rank(s)") : "", ")"));
}

template <typename F>
void on_all_ranks(Communicator& world, F&& f) {
  std::string error;
  try {
    f();
  } catch (const Error& e) {
    error = e.what();
  } catch (const std::exception& e) {  // std::filesystem_error, std::bad_alloc: same rule
    error = str_cat("checkpoint: ", e.what());
  }
  agree(world, error);
}

void write_text(const std::string& path, const std::string& text) {
  AtomicFile f(path, "checkpoint: '" + path + "': ");
  f.write(text.data(), text.size());
  f.commit();
}

void check_tag(const std::string& tag) {
  MS_CHECK(!tag.empty() && tag != "latest" && tag != "." && tag != ".." &&
               tag.find('/') == std::string::npos && !is_leftover_name(tag),
           "checkpoint: tag '", tag,
           "' cannot name a folder of the checkpoint directory (not empty, 'latest', '.', '..', "
           "containing '/', or ending like a save's staging folder, .tmp-<run id> or .old-<run "
           "id>)");
}

// Whether this rank's copy of parameter `param` is the one saved (see
// checkpoint.h: each element once).
bool saves(const CheckpointTarget& t, int param, const std::string& name, bool expert = false) {
  // Stage 0 replicates: one copy per group (expert-dp rank 0 for experts).
  if (t.optimizer.stage() == 0 && (expert ? t.expert_dp_rank : t.layout.dp_rank) != 0) return false;
  if (t.layout.tp > 1 && t.layout.tp_rank != 0 && tp_split_of(name) == TpSplit::Replicated)
    return false;
  return t.tied_copy.empty() || !t.tied_copy[param];
}

RankRecord describe_rank(CheckpointTarget& t, const CheckpointMeta& meta,
                         std::map<std::string, Tensor>& tensors) {
  Optimizer& opt = t.optimizer.optimizer();
  RankRecord rec;
  rec.rank = t.world.rank();
  rec.world_size = t.world.size();
  rec.step = meta.step;
  rec.skipped_steps = meta.skipped_steps;
  rec.layout = t.layout;
  rec.model = t.model.config();
  rec.optimizer = opt.name();
  rec.optimizer_steps = opt.state_steps();
  const auto states = opt.state_tensors();
  for (const auto& [k, ts] : states) rec.state_names.push_back(k);
  for (Generator* g : dropout_generators(t.model)) rec.rng.push_back(g->seed_state());
  rec.loss_scale = meta.loss_scale;
  rec.config = meta.config;
  const auto named = t.model.named_parameters();
  auto piece_of = [](const Tensor& src, int64_t begin, int64_t n) {
    MS_CHECK(src.dtype() == DType::F32 && src.is_contiguous(), "checkpoint: optimizer tensors ",
             "must be contiguous f32 (master weights), got ", dtype_name(src.dtype()));
    if (src.device() != Device::CPU)  // a device's state comes to the host to be written
      return Tensor::make_view(src, {n}, {1}, src.offset() + begin).to(Device::CPU);
    Tensor out = Tensor::empty({n});
    std::copy(src.host_data<float>() + begin, src.host_data<float>() + begin + n, out.host_data<float>());
    return out;
  };
  for (ZeroOptimizer* z : {&t.optimizer, t.expert_optimizer}) {
    if (z == nullptr) continue;
    Optimizer& o = z->optimizer();
    const auto st = o.state_tensors();
    for (const ZeroOptimizer::Fragment& f : z->fragments()) {
      const std::string& name = named[f.param].first;
      if (!saves(t, f.param, name, z == t.expert_optimizer)) continue;
      rec.pieces.push_back({name, f.shape, f.param_begin, f.param_begin + f.numel});
      tensors["param/" + name] = piece_of(o.params()[f.tensor], f.tensor_begin, f.numel);
      for (const auto& [k, ts] : st)
        tensors[k + "/" + name] = piece_of(ts[f.tensor], f.tensor_begin, f.numel);
    }
  }
  return rec;
}

bool same_sizes(const CheckpointLayout& a, const CheckpointLayout& b) {
  return a.dp == b.dp && a.tp == b.tp && a.pp == b.pp && a.zero_stage == b.zero_stage &&
         a.virtual_stages == b.virtual_stages && a.sequence_parallel == b.sequence_parallel;
}

// What must match between the checkpoint and the live run; the layout need not.
void check_compatible(const FullState& st, CheckpointTarget& t) {
  const GPTConfig& a = st.saved.model;
  const GPTConfig& b = t.model.config();
  MS_CHECK(a.vocab_size == b.vocab_size && a.block_size == b.block_size && a.n_layer == b.n_layer &&
               a.n_head == b.n_head && a.n_embd == b.n_embd && a.moe.experts == b.moe.experts &&
               (!a.moe.enabled() || a.moe.every == b.moe.every),
           "checkpoint '", st.tag_dir, "' holds a model ", a.describe(), ", but this run builds ",
           b.describe(),
           ": resume with the checkpoint's shape (--n-layer, --n-head, --n-embd, "
           "--seq-len, --moe-experts, --moe-every)");
  Optimizer& opt = t.optimizer.optimizer();
  std::vector<std::string> live;
  for (const auto& [k, ts] : opt.state_tensors()) live.push_back(k);
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
    return s.empty() ? std::string("none") : s;
  };
  MS_CHECK(st.saved.optimizer == opt.name() && st.saved.state_names == live, "checkpoint '",
           st.tag_dir, "' holds ", st.saved.optimizer, " state (", list(st.saved.state_names),
           "), but this run's optimizer is ", opt.name(), " (", list(live),
           "): resume with the checkpoint's --optimizer (and --momentum for sgd)");
}

void copy_run(const Tensor& dst, int64_t dst_begin, const Tensor& src, int64_t src_begin,
              int64_t n) {
  MS_ASSERT(dst.dtype() == DType::F32 && dst.is_contiguous() && src.is_contiguous(),
            "checkpoint: optimizer tensors must be contiguous f32");
  if (dst.device() != Device::CPU) {  // read on the host, then one copy up to the device
    comm_detail::copy_host_into_device(Tensor::make_view(dst, {n}, {1}, dst.offset() + dst_begin),
                                       Tensor::make_view(src, {n}, {1}, src.offset() + src_begin));
    return;
  }
  std::copy(src.host_data<float>() + src_begin, src.host_data<float>() + src_begin + n,
            dst.host_data<float>() + dst_begin);
}

void apply_full_state(const FullState& st, CheckpointTarget& t) {
  NoGradGuard no_grad;
  const CheckpointLayout& L = t.layout;
  auto named = t.model.named_parameters();
  for (size_t i = 0; i < named.size(); ++i) {
    const std::string& name = named[i].first;
    // This rank's tp shard of every kind (shard.h: exactly the cut a tp run makes).
    std::map<std::string, Tensor> local;
    for (const auto& [k, full] : st.tensors.at(name))
      local[k] = L.tp > 1 ? shard_param(full, tp_split_of(name), L.tp_rank, L.tp,
                                        st.saved.model.n_head, name)
                          : full;
    // The model's copy (16-bit under mixed precision: copy_ rounds), when it
    // is materialized (ZeRO-3 gathered it first).
    Tensor& p = named[i].second;
    if (p.numel() == local["param"].numel()) copy_(p, local["param"].to(p.device()));
    for (ZeroOptimizer* z : {&t.optimizer, t.expert_optimizer}) {
      if (z == nullptr) continue;
      Optimizer& opt = z->optimizer();
      const auto states = opt.state_tensors();
      for (const ZeroOptimizer::Fragment& f : z->fragments()) {
        if (f.param != static_cast<int>(i)) continue;
        copy_run(opt.params()[f.tensor], f.tensor_begin, local["param"], f.param_begin, f.numel);
        for (const auto& [k, ts] : states)
          copy_run(ts[f.tensor], f.tensor_begin, local.at(k), f.param_begin, f.numel);
      }
    }
  }
  t.optimizer.optimizer().set_state_steps(st.saved.optimizer_steps);
  if (t.expert_optimizer) t.expert_optimizer->optimizer().set_state_steps(st.saved.optimizer_steps);
}

void restore_rng(const FullState& st, CheckpointTarget& t) {
  std::vector<Generator*> gens = dropout_generators(t.model);
  auto check_count = [&](const std::vector<uint64_t>& saved) {
    if (saved.size() == gens.size()) return true;
    MS_CHECK(t.model.config().dropout == 0, "checkpoint '", st.tag_dir, "' holds ", saved.size(),
             " dropout streams per rank, this run's model has ", gens.size(),
             ": with dropout on, resume at the saved layout");
    return false;
  };
  // The same layout: each rank its own streams.
  const bool same = st.saved.world_size == t.world.size() && same_sizes(st.saved.layout, t.layout);
  if (same) {
    const std::vector<uint64_t>& saved = st.rng[t.world.rank()];
    if (!check_count(saved)) return;
    for (size_t i = 0; i < gens.size(); ++i) *gens[i] = Generator(saved[i]);
    return;
  }
  // Another layout. Every rank of the saved run built the same streams from
  // the same seed (without sequence parallelism its ranks draw alike), but a
  // stream advances only where its module ran: under pp, a block's dropout
  // drew only on the ranks of its stage, and rank 0 (stage 0) still holds the
  // later blocks' streams at their start. So each stream comes from a saved
  // rank that drew from it: the first whose state differs from the fresh one
  // this run just built from the same seed (the fresh one if none did).
  for (const auto& saved : st.rng)
    if (!check_count(saved)) return;
  for (size_t i = 0; i < gens.size(); ++i) {
    const uint64_t fresh = gens[i]->seed_state();
    uint64_t pick = fresh;
    for (const auto& saved : st.rng)
      if (saved[i] != fresh) {
        pick = saved[i];
        break;
      }
    *gens[i] = Generator(pick);
  }
}

}  // namespace

std::string CheckpointLayout::describe() const {
  return str_cat("dp ", dp, cp > 1 ? str_cat(" (dp ", dp / cp, " × cp ", cp, ")") : "", " × tp ", tp,
                 " × pp ", pp,
                 virtual_stages > 1 ? str_cat(" (", virtual_stages, " virtual stages)") : "",
                 ", ZeRO stage ", zero_stage, sequence_parallel ? ", sequence parallel" : "");
}

std::string resolve_checkpoint(const std::string& dir, const std::string& tag) {
  std::error_code ec;
  MS_CHECK(fs::is_directory(dir, ec), "checkpoint: '", dir, "' is not a directory");
  if (tag != "latest") {
    check_tag(tag);
    const std::string p = find_tag_dir(dir, tag);
    if (p.empty()) {
      std::vector<std::string> tags;
      for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_directory() && !is_leftover_name(e.path().filename().string()))
          tags.push_back(e.path().filename().string());
      std::sort(tags.begin(), tags.end());
      std::string have;
      for (const std::string& x : tags) have += (have.empty() ? "" : ", ") + x;
      throw Error(str_cat("checkpoint: no tag '", tag, "' in '", dir,
                          "' (tags there: ", have.empty() ? "none" : have, ")"));
    }
    return p;
  }
  const fs::path latest = fs::path(dir) / "latest";
  MS_CHECK(fs::is_regular_file(latest, ec), "checkpoint: '", latest.string(),
           "' is missing: no complete checkpoint was saved in '", dir,
           "' (or name a tag: --resume TAG)");
  std::ifstream f(latest);
  std::string name;
  std::getline(f, name);
  MS_CHECK(!name.empty() && name != "latest" && name != "." && name != ".." &&
               name.find('/') == std::string::npos,
           "checkpoint: '", latest.string(), "' holds '", name, "', which is no tag");
  const std::string p = find_tag_dir(dir, name);
  MS_CHECK(!p.empty(), "checkpoint: '", latest.string(), "' names tag '", name, "', but '",
           (fs::path(dir) / name).string(), "' does not exist");
  return p;
}

std::string save_checkpoint(const std::string& dir, const std::string& tag_in, CheckpointTarget& t,
                            const CheckpointMeta& meta) {
  const std::string tag = tag_in.empty() ? str_cat("global_step", meta.step) : tag_in;
  const std::string tag_dir = (fs::path(dir) / tag).string();
  const bool lead = t.world.rank() == 0;
  // 1. Rank 0 locks the folder against a second job, repairs what an earlier
  //    interrupted save left (checkpoint_folder.h), draws this save's run id
  //    and creates its staging folder; every rank learns the id.
  std::optional<CheckpointDirLock> lock;
  std::string run;
  on_all_ranks(t.world, [&] {
    check_tag(tag);
    if (!lead) return;
    check_save_path(rank_file_stem(tag_dir, 0) + ".json");
    fs::create_directories(dir);
    lock.emplace(dir);
    repair_checkpoint_dir(dir);
    std::error_code ec;
    MS_CHECK(!fs::exists(tag_dir, ec) || fs::is_directory(tag_dir, ec), "checkpoint: '", tag_dir,
             "' exists and is not a folder: it cannot be replaced by a checkpoint");
    run = new_save_run_id();
    fs::create_directories(staging_dir(dir, tag, run));
  });
  run = broadcast_text(t.world, run, 0);
  const std::string staged = staging_dir(dir, tag, run);
  try {
    // 2. Every rank its pair of files, each written atomically, stamped with
    //    the run id.
    on_all_ranks(t.world, [&] {
      std::map<std::string, Tensor> tensors;
      RankRecord rec = describe_rank(t, meta, tensors);
      rec.run_id = run;
      const std::string stem = rank_file_stem(staged, rec.rank);
      save_safetensors(stem + ".safetensors", tensors, {{"minispeed", "checkpoint"}});
      test_kill_point("rank-files");
      write_text(stem + ".json", record_to_json(rec));
    });
    // 3. All ranks agreed their files are written: the marker, then the swap
    //    into place and latest.
    on_all_ranks(t.world, [&] {
      if (!lead) return;
      write_text((fs::path(staged) / "COMPLETE").string(),
                 str_cat("step ", meta.step, ", ", t.world.size(), " rank files, run ", run, "\n"));
      publish_tag(dir, tag, staged, run);
    });
  } catch (const Error&) {
    std::error_code ec;
    if (lead) fs::remove_all(staged, ec);  // never complete; the old copy is untouched
    throw;
  }
  return tag_dir;
}

CheckpointMeta load_checkpoint(const std::string& dir, const std::string& tag,
                               CheckpointTarget& t) {
  FullState st;
  on_all_ranks(t.world, [&] {
    st = read_full_state(resolve_checkpoint(dir, tag));
    check_compatible(st, t);
  });
  // ZeRO-3: every block materialized (collective over dp), so the model's
  // copies can be written beside the optimizer's slices.
  t.optimizer.gather_full_parameters();
  on_all_ranks(t.world, [&] {
    apply_full_state(st, t);
    restore_rng(st, t);
  });
  CheckpointMeta meta;
  meta.step = st.saved.step;
  meta.skipped_steps = st.saved.skipped_steps;
  meta.loss_scale = st.saved.loss_scale;
  meta.config = st.saved.config;
  return meta;
}

}  // namespace ms
