// The checkpoint folder's states after a save killed at each point of its
// swap (parallel/engine/checkpoint_folder.h), built by hand: find_tag_dir
// reads a complete copy from each, repair puts it back in place, and
// check_checkpoint_dir refuses a folder no save could write.
#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "catch_compat.h"
#include "parallel/engine/checkpoint_folder.h"
#include "temp_dir.h"
#include "tensor/error.h"

using namespace ms;
using ms::test::TempDir;
namespace fs = std::filesystem;

namespace {

const std::string kOld = "1111111111111111", kNew = "2222222222222222";

// A tag folder holding COMPLETE (written by `run`) or not.
void make_copy(const std::string& path, const std::string& run, bool complete) {
  fs::create_directories(path);
  std::ofstream(path + "/rank_00000.json") << run;
  if (complete) std::ofstream(path + "/COMPLETE") << "step 2, 1 rank files, run " << run << "\n";
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("checkpoint folder: a save killed at any point leaves one complete copy, repaired next save",
          "[checkpoint-folder]") {
  TempDir t("ckfolder");
  const std::string dir = t.file("ck"), tag = dir + "/global_step2";
  const std::string staged = staging_dir(dir, "global_step2", kNew);
  const std::string aside = dir + "/global_step2.old-" + kNew;
  CHECK(staged == dir + "/global_step2.tmp-" + kNew);
  CHECK(is_leftover_name("global_step2.tmp-" + kNew));
  CHECK(is_leftover_name("global_step2.old-" + kNew));
  CHECK(!is_leftover_name("global_step2"));
  CHECK(!is_leftover_name("global_step2.tmp-xyz"));

  SECTION("killed while the rank files are written: the old copy stays, the staging goes") {
    make_copy(tag, kOld, true);
    make_copy(staged, kNew, false);
    CHECK(find_tag_dir(dir, "global_step2") == tag);
    repair_checkpoint_dir(dir);
    CHECK(complete_run_id(tag) == kOld);
    CHECK(!fs::exists(staged));
  }
  SECTION("killed after the old copy was set aside: the new complete one is read, then put in place") {
    make_copy(aside, kOld, true);
    make_copy(staged, kNew, true);
    CHECK(find_tag_dir(dir, "global_step2") == staged);
    repair_checkpoint_dir(dir);
    CHECK(complete_run_id(tag) == kNew);
    CHECK(!fs::exists(staged));
    CHECK(!fs::exists(aside));
  }
  SECTION("only the set-aside copy is complete: it is read and put back") {
    make_copy(aside, kOld, true);
    make_copy(staged, kNew, false);
    CHECK(find_tag_dir(dir, "global_step2") == aside);
    repair_checkpoint_dir(dir);
    CHECK(complete_run_id(tag) == kOld);
    CHECK(fs::directory_iterator(dir) != fs::directory_iterator());
    int n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
    CHECK(n == 1);
  }
  SECTION("killed after the swap, before the old copy was removed") {
    make_copy(tag, kNew, true);
    make_copy(aside, kOld, true);
    CHECK(find_tag_dir(dir, "global_step2") == tag);
    repair_checkpoint_dir(dir);
    CHECK(complete_run_id(tag) == kNew);
    CHECK(!fs::exists(aside));
  }
  SECTION("a tag never saved") {
    fs::create_directories(dir);
    CHECK(find_tag_dir(dir, "global_step2").empty());
  }
  SECTION("publish: the new copy in place, latest names it, the old one gone") {
    make_copy(tag, kOld, true);
    make_copy(staged, kNew, true);
    publish_tag(dir, "global_step2", staged, kNew);
    CHECK(complete_run_id(tag) == kNew);
    std::ifstream latest(dir + "/latest");
    std::string name;
    std::getline(latest, name);
    CHECK(name == "global_step2");
    int n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
    CHECK(n == 2);  // global_step2, latest
  }
}

TEST_CASE("checkpoint folder: a second job saving into the folder is refused at once",
          "[checkpoint-folder]") {
  TempDir t("ckfolder");
  const std::string dir = t.file("ck");
  {
    CheckpointDirLock first(dir);
    // Another open file description, as another process would hold.
    const int fd = ::open((dir + "/.lock").c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    CHECK(::flock(fd, LOCK_EX | LOCK_NB) != 0);
    ::close(fd);
  }
  const int fd = ::open((dir + "/.lock").c_str(), O_RDWR);
  CHECK(::flock(fd, LOCK_EX | LOCK_NB) == 0);  // released with its holder
  CHECK(error_of([&] { CheckpointDirLock second(dir); }) ==
        "checkpoint: another job is saving into '" + dir + "' (it holds '" + dir +
            "/.lock'): give each job its own --checkpoint-dir");
  ::close(fd);
}

TEST_CASE("checkpoint folder: check_checkpoint_dir refuses what no save could write",
          "[checkpoint-folder]") {
  TempDir t("ckfolder");
  const std::string fresh = t.file("a/b/c");
  check_checkpoint_dir(fresh);
  CHECK(fs::is_directory(fresh));
  CHECK(fs::is_empty(fresh));  // the probe file is gone
  std::ofstream(t.file("file")) << "x";
  CHECK(error_of([&] { check_checkpoint_dir(t.file("file")); }) ==
        "cannot save checkpoints in '" + t.file("file") +
            "': it is a regular file, not a directory");
  CHECK(error_of([&] { check_checkpoint_dir(t.file("file/sub")); })
            .rfind("cannot save checkpoints in '" + t.file("file/sub") + "': cannot create it: ", 0) ==
        0);
  CHECK(error_of([&] { check_checkpoint_dir("/proc/minispeed_ckpt"); })
            .rfind("cannot save checkpoints in '/proc/minispeed_ckpt': cannot create it: ", 0) == 0);
  CHECK(error_of([&] { check_checkpoint_dir("/proc"); })
            .rfind("cannot save checkpoints in '/proc': cannot create a file in it: ", 0) == 0);
  CHECK(error_of([&] { check_checkpoint_dir(""); }) ==
        "cannot save checkpoints in '': the path is empty");
}
