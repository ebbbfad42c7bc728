// The checkpoint folder as a file system object: where a save may go, how a
// new save of a tag replaces the old one without a moment in which neither
// is complete, how a save interrupted at any point is found and repaired,
// and the lock that refuses a second job saving into the same folder.
//
// A save of TAG (checkpoint.cpp, save_checkpoint) by save run RUN:
//   1. rank 0 takes DIR/.lock and repairs earlier interrupted saves;
//   2. every rank writes its files into DIR/TAG.tmp-RUN/ (staging);
//   3. rank 0 writes COMPLETE there, then publish_tag():
//      DIR/TAG -> DIR/TAG.old-RUN   (the complete old copy, set aside)
//      DIR/TAG.tmp-RUN -> DIR/TAG   (the complete new copy, in place)
//      DIR/latest <- TAG            (written beside, renamed over)
//      DIR/TAG.old-RUN removed
// A kill at any point leaves at least one complete copy of TAG: find_tag_dir()
// reads whichever is there, and the next save's repair puts it back in place.
// Nothing complete is deleted before its replacement is complete and in place
// (the way llm.c's DONE marker and torch.distributed.checkpoint's staging
// folder avoid a half-written "latest").
#pragma once
#include <string>

namespace ms {

// Throws ms::Error naming `dir` and the reason when checkpoints could not be
// saved there: it is a file, cannot be created, or a file cannot be written
// and removed in it (read-only, /proc...). Creates the folder. Called by
// `train` before step 1 so a bad --checkpoint-dir ends the run at once, not
// at the first save after hours of training. Not collective.
void check_checkpoint_dir(const std::string& dir);

// A fresh save run id: 16 hex digits from std::random_device. Rank 0 draws
// it, every rank stamps it into its rank file, COMPLETE records it.
std::string new_save_run_id();

// DIR/TAG.tmp-RUN: where save run RUN writes TAG before publishing it.
std::string staging_dir(const std::string& dir, const std::string& tag, const std::string& run);

// Whether `name` is a staging or set-aside folder name (never a tag).
bool is_leftover_name(const std::string& name);

// The complete copy of TAG: DIR/TAG when it exists; after a save interrupted
// between setting the old copy aside and putting the new one in place, the
// complete staged copy (or else the set-aside one). "" when there is none.
std::string find_tag_dir(const std::string& dir, const std::string& tag);

// Rank 0, holding the lock: for every tag with leftovers, puts the copy
// find_tag_dir() reads in place, then removes the other leftovers (staging
// folders of interrupted saves, set-aside copies).
void repair_checkpoint_dir(const std::string& dir);

// Step 3 above, from a staging folder that holds COMPLETE.
void publish_tag(const std::string& dir, const std::string& tag, const std::string& staged,
                 const std::string& run);

// The run id COMPLETE records ("" for none); `tag_dir` must hold COMPLETE.
std::string complete_run_id(const std::string& tag_dir);

// Test-only fault injection: when the environment variable MS_TEST_KILL_AT
// equals `phase`, the process kills itself with SIGKILL (no cleanup runs,
// like a node failure). Phases, in save order: rank-files (a rank's
// .safetensors written, its .json not), complete (COMPLETE staged), aside
// (old copy set aside), in-place (new copy in place, latest not updated),
// latest (latest updated, the old copy not removed).
void test_kill_point(const char* phase);

// flock(LOCK_EX | LOCK_NB) on DIR/.lock for the life of the object: a second
// job saving into the same folder at the same time fails at once. File
// systems without flock (ENOLCK) are let through: the run id stamped into
// every rank file still refuses a mixed checkpoint at load.
class CheckpointDirLock {
 public:
  explicit CheckpointDirLock(const std::string& dir);
  ~CheckpointDirLock();
  CheckpointDirLock(const CheckpointDirLock&) = delete;
  CheckpointDirLock& operator=(const CheckpointDirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace ms
