// Checkpoints across layouts (parallel/engine/checkpoint.h): a checkpoint
// saved after AdamW steps at one (dp, tp, pp, ZeRO stage) is loaded into a
// freshly built model at every other layout the world allows, and saved
// again at once; both folders must hold exactly the same serial state
// (read_full_state: every weight and both moments, bit for bit, and the step
// count) — DeepSpeed cannot do this without its offline universal-checkpoint
// conversion. Then the loaded run takes a step (training continues). Also:
// one bad file makes every rank throw the same error (no rank hangs).
#include <filesystem>
#include <fstream>

#include "nn/data.h"
#include "nn/gpt.h"
#include "parallel/engine/checkpoint.h"
#include "parallel/engine/checkpoint_folder.h"
#include "parallel/engine/checkpoint_state.h"
#include "parallel/mesh.h"
#include "parallel/pp/pipeline_engine.h"
#include "parallel/tp/tp_gpt.h"
#include "tests/catch_compat.h"
#include "tests/mpi/error_capture.h"

using namespace ms;
namespace fs = std::filesystem;

namespace {

constexpr int64_t B = 2, T = 16;

GPTConfig tiny() {
  GPTConfig c;
  c.n_layer = 2, c.n_head = 2, c.n_embd = 30, c.block_size = T;  // odd sizes: ZeRO pads
  return c;
}

struct Layout {
  int dp, tp, pp, stage;
  std::string name() const { return str_cat("dp ", dp, " tp ", tp, " pp ", pp, " ZeRO ", stage); }
};

// One rank's live run at a layout.
struct Live {
  Mesh mesh;
  std::shared_ptr<GPT> serial;
  std::shared_ptr<TpGPT> tp;
  std::unique_ptr<ZeroOptimizer> opt;
  std::unique_ptr<CheckpointTarget> target;
  Communicator world;
  GPT& gpt() { return tp ? tp->gpt() : *serial; }

  Live(Communicator w, const Layout& l, uint64_t seed) : mesh(w, l.dp, l.tp, l.pp), world(w) {
    serial = std::make_shared<GPT>(tiny(), seed);
    ZeroOptions o;
    o.stage = l.stage;
    o.bucket_bytes = 4 << 10;
    if (l.tp > 1) {
      tp = std::make_shared<TpGPT>(serial, mesh.tp(), false);
      o.tp = ZeroTensorParallel{mesh.tp(), tp->replicated_mask(), false};
    }
    std::vector<bool> tied;
    if (l.pp > 1) {
      std::vector<std::string> names;
      for (const auto& [n, t] : gpt().named_parameters()) names.push_back(n);
      pp::StageParams sp = pp::stage_params(names, tiny().n_layer, l.pp, 1, mesh.pp_rank());
      o.pp = ZeroPipeline{mesh.pp(), sp.owned, sp.tied_copy};
      tied = sp.tied_copy;
    }
    opt = std::make_unique<ZeroOptimizer>(gpt(), mesh.dp(), o, [](std::vector<Tensor> ps) {
      return std::make_unique<AdamW>(std::move(ps), 1e-2, 0.9, 0.95, 1e-8, 0.1);
    });
    target.reset(new CheckpointTarget{
        world,
        gpt(),
        *opt,
        {l.dp, l.tp, l.pp, l.stage, 1, false, mesh.dp_rank(), mesh.tp_rank(), mesh.pp_rank()},
        tied});
  }

  // One step (no pipeline: only layouts without pp train here).
  void step(const TokenData& data, int64_t s) {
    Batch b = data.train_batch(s, mesh.dp_rank(), mesh.dp_size(), B, T);
    Tensor loss = tp ? tp->loss(b.x, b.y) : serial->loss(b.x, b.y);
    loss.backward();
    opt->step(1e-2, 1.0);
  }
};

std::vector<Layout> layouts(int ws) {
  std::vector<Layout> out;
  for (int stage = 0; stage <= 3; ++stage) out.push_back({ws, 1, 1, stage});
  out.push_back({ws / 2, 2, 1, 1});
  out.push_back({ws / 2, 1, 2, 1});
  if (ws == 4) out.push_back({1, 2, 2, 0});
  return out;
}

bool same_state(const FullState& a, const FullState& b) {
  if (a.names != b.names || a.saved.optimizer_steps != b.saved.optimizer_steps ||
      a.saved.step != b.saved.step)
    return false;
  for (const auto& [name, kinds] : a.tensors)
    for (const auto& [k, t] : kinds)
      if (t.to_vector() != b.tensors.at(name).at(k).to_vector()) return false;
  return true;
}

std::string shared_dir(Communicator& world) {
  const std::string dir = str_cat("/tmp/minispeed_ckpt_mpi_", world.size());
  world.barrier();  // no rank still reads the previous test's files
  if (world.rank() == 0) fs::remove_all(dir);
  world.barrier();
  return dir;
}

}  // namespace

TEST_CASE("checkpoint: saved at one layout, loaded at every other, the state is bit-identical",
          "[checkpoint-resume]") {
  Communicator world = Communicator::world();
  const int ws = world.size();
  if (ws != 2 && ws != 4) return;
  const std::string dir = shared_dir(world);
  TokenData data = TokenData::load("data/tinyshakespeare.txt");
  // Each save gets its own tag: a rank still reading one must not see the
  // next save rewrite it.
  int n = 0;
  for (const Layout& from : {Layout{ws, 1, 1, 2}, Layout{ws / 2, 2, 1, 1}}) {
    const std::string src_tag = str_cat("src", n++);
    CheckpointMeta meta;
    {
      Live src(world, from, 7);
      for (int64_t s = 0; s < 2; ++s) src.step(data, s);
      meta.step = 2;
      save_checkpoint(dir, src_tag, *src.target, meta);
    }
    for (const Layout& to : layouts(ws)) {
      Live dst(world, to, 99);  // other initial weights: the load must overwrite every one
      const std::string dst_tag = str_cat("dst", n++);
      std::string err = ms::test::error_of([&] {
        const CheckpointMeta got = load_checkpoint(dir, src_tag, *dst.target);
        MS_CHECK(got.step == 2, "step ", got.step);
        save_checkpoint(dir, dst_tag, *dst.target, got);
      });
      bool same = false;
      if (err == "(no error)")
        same =
            same_state(read_full_state(dir + "/" + src_tag), read_full_state(dir + "/" + dst_tag));
      INFO(from.name() << " -> " << to.name() << ": " << err);
      CHECK(same);
      if (to.pp == 1 && err == "(no error)") {  // training continues
        dst.step(data, 2);
        CHECK(std::isfinite(dst.gpt().parameters()[0].to_vector()[0]));
      }
    }
  }
}

TEST_CASE("checkpoint: a missing rank file is the same error on every rank",
          "[checkpoint-resume]") {
  Communicator world = Communicator::world();
  const std::string dir = shared_dir(world);
  const Layout l{world.size(), 1, 1, 1};
  Live run(world, l, 7);
  save_checkpoint(dir, "t", *run.target, {});
  world.barrier();
  if (world.rank() == 0) fs::remove(dir + "/t/rank_00001.json");
  world.barrier();
  const std::string err = ms::test::error_of([&] { load_checkpoint(dir, "latest", *run.target); });
  INFO(err);
  CHECK(ms::test::has(err, "checkpoint: rank file '" + dir + "/t/rank_00001.json' is missing"));
  CHECK(ms::test::has(err, str_cat("(on rank 0 and ", world.size() - 1, " other rank(s))")));
}

TEST_CASE("checkpoint: a save that fails on one rank fails on all and is never complete",
          "[checkpoint-resume]") {
  Communicator world = Communicator::world();
  const std::string dir = shared_dir(world);
  Live run(world, Layout{world.size(), 1, 1, 1}, 7);
  CheckpointMeta meta;
  meta.step = 1;
  save_checkpoint(dir, "good", *run.target, meta);
  world.barrier();
  // A file where the tag's folder would go: rank 0 cannot put the save in
  // place; its error must reach every rank, not leave them waiting.
  if (world.rank() == 0) std::ofstream(dir + "/bad") << "x";
  world.barrier();
  meta.step = 2;
  const std::string err =
      ms::test::error_of([&] { save_checkpoint(dir, "bad", *run.target, meta); });
  INFO(err);
  CHECK(ms::test::has(err, "cannot save to '" + dir + "/bad/rank_00000.json': parent '" + dir +
                               "/bad' is a regular file, not a directory"));
  CHECK(ms::test::has(err, "(on rank 0)"));
  CHECK(fs::is_regular_file(dir + "/bad"));
  for (const auto& e : fs::directory_iterator(dir))  // no staging folder left behind
    CHECK(!is_leftover_name(e.path().filename().string()));
  CHECK(resolve_checkpoint(dir, "latest") == dir + "/good");
}

TEST_CASE("checkpoint: a folder mixing two saves' rank files is refused on every rank, naming the file",
          "[checkpoint-resume]") {
  Communicator world = Communicator::world();
  if (world.size() < 2) return;
  const std::string dir = shared_dir(world);
  Live run(world, Layout{world.size(), 1, 1, 1}, 7);
  CheckpointMeta meta;
  meta.step = 1;
  save_checkpoint(dir, "a", *run.target, meta);
  save_checkpoint(dir, "b", *run.target, meta);  // the same state, another save run
  world.barrier();
  // What two jobs writing one folder leave: rank 1's files from the other save.
  if (world.rank() == 0)
    for (const char* ext : {".json", ".safetensors"})
      fs::copy_file(dir + "/b/rank_00001" + ext, dir + "/a/rank_00001" + ext,
                    fs::copy_options::overwrite_existing);
  world.barrier();
  const std::string err = ms::test::error_of([&] { load_checkpoint(dir, "a", *run.target); });
  INFO(err);
  CHECK(ms::test::has(err, "checkpoint: '" + dir + "/a/rank_00001.json' was written by save run '"));
  CHECK(ms::test::has(err, "but '" + dir + "/a/rank_00000.json' and COMPLETE by run '"));
  CHECK(ms::test::has(err, "the folder mixes rank files of different saves"));
  CHECK(ms::test::has(err, str_cat("(on rank 0 and ", world.size() - 1, " other rank(s))")));
  CHECK(ms::test::error_of([&] { load_checkpoint(dir, "b", *run.target); }) == "(no error)");
}
