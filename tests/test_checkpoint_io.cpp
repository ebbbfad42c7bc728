// Checkpoint folders read back (parallel/engine/checkpoint_state.h): a real
// one-process save by `minispeed train --save-every`, then damaged or
// hostile copies of it, each refused with its message (never a crash, never
// a silently wrong state).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "catch_compat.h"
#include "cli_run.h"
#include "nn/safetensors.h"
#include "parallel/engine/checkpoint.h"
#include "parallel/engine/checkpoint_state.h"
#include "temp_dir.h"
#include "tensor/error.h"

using namespace ms;
using ms::test::TempDir;
namespace fs = std::filesystem;

namespace {

// DIR/global_step2 of a 1-process AdamW run; returns DIR.
std::string saved_checkpoint(const TempDir& t) {
  const std::string dir = t.file("ck");
  const auto r = ms::test::run_minispeed(
      "train --data data/tinyshakespeare.txt --n-layer 1 --n-head 2 --n-embd 16 --seq-len 16 "
      "--batch-size 2 --steps 2 --save-every 2 --eval-every 0 --sample-tokens 0 "
      "--checkpoint-dir " +
      dir);
  INFO(r.output);
  REQUIRE(r.code == 0);
  return dir;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

}  // namespace

TEST_CASE("checkpoint: a one-process save reads back whole, step and moments included",
          "[checkpoint-io]") {
  TempDir t("ckpt");
  const std::string dir = saved_checkpoint(t);
  const std::string tag = resolve_checkpoint(dir, "latest");
  CHECK(tag == dir + "/global_step2");
  const FullState st = read_full_state(tag);
  CHECK(st.saved.step == 2);
  CHECK(st.saved.optimizer == "adamw");
  CHECK(st.saved.optimizer_steps == 2);
  CHECK(st.names.size() == 2 + 12 + 2);  // wte, wpe, one block, ln_f
  CHECK(st.tensors.at("h.0.attn.c_attn.weight").at("exp_avg_sq").shape() == Shape{16, 48});
  // The record survives its JSON.
  const RankRecord r = record_from_json(slurp(tag + "/rank_00000.json"), "x");
  CHECK(record_to_json(r) == slurp(tag + "/rank_00000.json"));
  // consolidate's model holds the saved weights.
  auto model = full_state_model(st);
  for (const auto& [name, p] : model->named_parameters())
    CHECK(p.to_vector() == st.tensors.at(name).at("param").to_vector());
}

TEST_CASE("checkpoint: damaged or hostile folders are refused with their reason",
          "[checkpoint-io]") {
  TempDir t("ckpt");
  const std::string dir = saved_checkpoint(t);
  const std::string tag = dir + "/global_step2";
  const std::string json = tag + "/rank_00000.json", shard = tag + "/rank_00000.safetensors";

  SECTION("an interrupted save: no COMPLETE") {
    fs::remove(tag + "/COMPLETE");
    CHECK(error_of([&] { read_full_state(tag); }) ==
          "checkpoint: '" + tag +
              "' is incomplete: it has no COMPLETE marker (the save was interrupted, or is still "
              "running); resume from an earlier tag");
  }
  SECTION("a missing rank file") {
    fs::remove(shard);
    CHECK(error_of([&] { read_full_state(tag); }) ==
          "checkpoint: rank file '" + shard +
              "' is missing (a checkpoint folder holds COMPLETE and "
              "rank_NNNNN.{json,safetensors} for every rank that saved it)");
  }
  SECTION("a truncated shard") {
    const std::string bytes = slurp(shard);
    spit(shard, bytes.substr(0, bytes.size() - 100));
    CHECK_THAT(error_of([&] { read_full_state(tag); }),
               Catch::Contains("load_safetensors: '" + shard + "'"));
  }
  SECTION("a hostile shard: its header claims more data than the file has") {
    const std::string header =
        R"({"param/wte.weight":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}})";
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    spit(shard, bytes + header + std::string(16, '\0'));
    CHECK_THAT(error_of([&] { read_full_state(tag); }),
               Catch::Contains("load_safetensors: '" + shard + "'"));
  }
  SECTION("a record lying about a piece's range") {
    nlohmann::json j = nlohmann::json::parse(slurp(json));
    j["pieces"][0]["end"] = 1 << 30;
    spit(json, j.dump());
    const std::string name = j["pieces"][0]["name"];
    CHECK_THAT(
        error_of([&] { read_full_state(tag); }),
        Catch::Contains("piece '" + name + "' claims elements [0, 1073741824) of a shard of"));
  }
  SECTION("a record giving elements twice") {
    nlohmann::json j = nlohmann::json::parse(slurp(json));
    j["pieces"].push_back(j["pieces"][0]);
    spit(json, j.dump());
    CHECK_THAT(error_of([&] { read_full_state(tag); }),
               Catch::Contains("gives element 0 again (rank 0 gave it already)"));
  }
  SECTION("a piece missing: its elements are in no file") {
    nlohmann::json j = nlohmann::json::parse(slurp(json));
    const std::string name = j["pieces"][0]["name"];
    j["pieces"].erase(0);
    spit(json, j.dump());
    SafetensorsFile f = load_safetensors(shard);
    for (const char* k : {"param/", "exp_avg/", "exp_avg_sq/"}) f.tensors.erase(k + name);
    save_safetensors(shard, f.tensors, f.metadata);
    CHECK(error_of([&] { read_full_state(tag); }) == "checkpoint: '" + tag +
                                                         "': no rank file holds element 0 of '" +
                                                         name + "': the checkpoint is damaged");
  }
  SECTION("a piece of another model shape") {
    nlohmann::json j = nlohmann::json::parse(slurp(json));
    j["pieces"][0]["local_shape"] = {3, 3};
    spit(json, j.dump());
    CHECK_THAT(error_of([&] { read_full_state(tag); }), Catch::Contains("has shard shape [3, 3]"));
  }
  SECTION("a lying n_layer, tp or world_size is refused before anything is sized by it") {
    // Each would allocate without bound if believed (a 10^6-layer model is
    // 13 GB here; world_size sizes the per-rank tables; tp the shard slots).
    const nlohmann::json saved = nlohmann::json::parse(slurp(json));
    nlohmann::json j = saved;
    j["model"]["n_layer"] = 1000000;
    spit(json, j.dump());
    CHECK(error_of([&] { read_full_state(tag); }) ==
          "checkpoint: '" + json +
              "': model.n_layer 1000000, but the rank files hold the tensors of 1 layer(s) (h.0 "
              "to h.0): it should be 1");
    j = saved;
    j["model"]["n_embd"] = 1 << 20;
    j["model"]["n_head"] = 1;
    spit(json, j.dump());
    CHECK_THAT(error_of([&] { read_full_state(tag); }),
               Catch::Contains("parameters, but the rank files hold only 7664: model.vocab_size, "
                               "model.block_size or model.n_embd does not match the tensors"));
    j = saved;
    j["layout"]["tp"] = 1000000000;
    spit(json, j.dump());
    CHECK(error_of([&] { read_full_state(tag); }) ==
          "checkpoint: '" + json +
              "': layout.tp 1000000000 is out of range: it should be in [1, 1] (world_size)");
    for (const int64_t ws : {int64_t{1000000000}, int64_t{2}}) {
      j = saved;
      j["world_size"] = ws;
      spit(json, j.dump());
      CHECK(error_of([&] { read_full_state(tag); }) ==
            "checkpoint: '" + json + "': world_size " + std::to_string(ws) + ", but '" + tag +
                "' holds the files of 1 rank(s) (rank_NNNNN.json, .safetensors): it should be 1");
    }
    j = saved;
    j["world_size"] = 4294967297ULL;  // 2^32 + 1: an int would read it as 1
    spit(json, j.dump());
    CHECK_THAT(error_of([&] { read_full_state(tag); }), Catch::Contains("world_size 4294967297"));
  }
  SECTION("a negative or out-of-range counter is refused, naming the key") {
    const nlohmann::json saved = nlohmann::json::parse(slurp(json));
    auto refused = [&](const std::function<void(nlohmann::json&)>& lie, const std::string& want) {
      nlohmann::json j = saved;
      lie(j);
      spit(json, j.dump());
      const std::string err = error_of([&] { read_full_state(tag); });
      INFO(err);
      CHECK(err == "checkpoint: '" + json + "': " + want);
    };
    refused([](auto& j) { j["optimizer"]["steps"] = -3; },
            "optimizer.steps -3 is out of range: it should be in [0, 2] (0 to step)");
    refused([](auto& j) { j["optimizer"]["steps"] = 3; },
            "optimizer.steps 3 is out of range: it should be in [0, 2] (0 to step)");
    refused([](auto& j) { j["optimizer"]["steps"] = 1.5; },
            "optimizer.steps 1.5 is not an integer in [0, 2] (0 to step)");
    refused([](auto& j) { j["step"] = -1; },
            "step -1 is out of range: it should be in [0, 9223372036854775807]");
    refused([](auto& j) { j["skipped_steps"] = 5; },
            "skipped_steps 5 is out of range: it should be in [0, 2] (0 to step)");
    refused([](auto& j) { j["model"]["dropout"] = -0.5; },
            "model.dropout -0.5 is out of range: it should be in [0, 1]");
    refused([](auto& j) { j["model"]["attn_dropout"] = 1.0; },
            "model.attn_dropout 1 is out of range: it should be in [0, 1)");
    refused([](auto& j) { j["layout"]["zero_stage"] = 4; },
            "layout.zero_stage 4 is out of range: it should be in [0, 3]");
    const nlohmann::json scale = {
        {"scale", 1024.0}, {"cur_iter", 2}, {"last_overflow_iter", -1}, {"cur_hysteresis", 1}};
    refused([&](auto& j) { j["loss_scale"] = scale, j["loss_scale"]["scale"] = -1.0; },
            "loss_scale.scale -1 is out of range: it should be in [0, 1.79769e+308]");
    refused([&](auto& j) { j["loss_scale"] = scale, j["loss_scale"]["scale"] = 0.0; },
            "loss_scale.scale 0 is out of range: it should be > 0");
    refused([&](auto& j) { j["loss_scale"] = scale, j["loss_scale"]["cur_iter"] = -7; },
            "loss_scale.cur_iter -7 is out of range: it should be in [0, 2] (0 to step)");
    refused([&](auto& j) { j["loss_scale"] = scale, j["loss_scale"]["last_overflow_iter"] = -2; },
            "loss_scale.last_overflow_iter -2 is out of range: it should be in [-1, 2] (-1: none, "
            "to cur_iter)");
    refused([&](auto& j) { j["loss_scale"] = scale, j["loss_scale"]["cur_hysteresis"] = 0; },
            "loss_scale.cur_hysteresis 0 is out of range: it should be in [1, 2147483647]");
  }
  SECTION("a rank file of another save run than COMPLETE's") {
    nlohmann::json j = nlohmann::json::parse(slurp(json));
    const std::string run = j["run_id"];
    CHECK(slurp(tag + "/COMPLETE") == "step 2, 1 rank files, run " + run + "\n");
    j["run_id"] = "0123456789abcdef";
    spit(json, j.dump());
    CHECK(error_of([&] { read_full_state(tag); }) ==
          "checkpoint: '" + json +
              "' was written by save run '0123456789abcdef', but '" + tag +
              "/COMPLETE' records run '" + run +
              "': the folder mixes files of different saves (two jobs saving into one folder?); "
              "resume from another tag");
  }
  SECTION("malformed JSON") {
    spit(json, "{\"format\": ");
    CHECK_THAT(error_of([&] { read_full_state(tag); }),
               Catch::Contains("checkpoint: '" + json + "' is not a valid rank record: "));
  }
  SECTION("latest pointing nowhere, missing, or an unknown tag") {
    spit(dir + "/latest", "gone\n");
    CHECK(error_of([&] { resolve_checkpoint(dir, "latest"); }) ==
          "checkpoint: '" + dir + "/latest' names tag 'gone', but '" + dir +
              "/gone' does not exist");
    fs::remove(dir + "/latest");
    CHECK(error_of([&] { resolve_checkpoint(dir, "latest"); }) ==
          "checkpoint: '" + dir + "/latest' is missing: no complete checkpoint was saved in '" +
              dir + "' (or name a tag: --resume TAG)");
    CHECK(error_of([&] { resolve_checkpoint(dir, "global_step7"); }) ==
          "checkpoint: no tag 'global_step7' in '" + dir + "' (tags there: global_step2)");
  }
}

TEST_CASE("checkpoint: train and consolidate refuse bad checkpoint flags in one line",
          "[checkpoint-io][cli]") {
  TempDir t("ckpt");
  const std::string base =
      "train --data data/tinyshakespeare.txt --n-layer 1 --n-head 2 --n-embd 16 --seq-len 16 "
      "--batch-size 2 --steps 3 --eval-every 0 --sample-tokens 0 ";
  ms::test::check_one_line_error(base + "--resume latest",
                                 "error: --resume latest needs --checkpoint-dir DIR");
  ms::test::check_one_line_error(base + "--save-every 2",
                                 "error: --save-every 2 needs --checkpoint-dir DIR");
  const std::string dir = saved_checkpoint(t);
  ms::test::check_one_line_error(base + "--checkpoint-dir " + dir + " --resume latest --n-embd 32",
                                 "holds a model");
  ms::test::check_one_line_error(
      base + "--checkpoint-dir " + dir + " --resume latest --optimizer sgd",
      "holds adamw state (exp_avg, exp_avg_sq), but this run's optimizer is sgd");
  ms::test::check_one_line_error("consolidate " + t.file("nothing") + " " + t.file("o.st"),
                                 "is not a directory");
  // The consolidated file is what --init-from reads.
  const auto r = ms::test::run_minispeed("consolidate " + dir + " " + t.file("w.safetensors"));
  INFO(r.output);
  CHECK(r.code == 0);
  CHECK(r.output.find("(step 2, saved by 1 rank(s): dp 1 × tp 1 × pp 1, ZeRO stage 0)") !=
        std::string::npos);
  CHECK(ms::test::run_minispeed(base + "--init-from " + t.file("w.safetensors")).code == 0);
}
