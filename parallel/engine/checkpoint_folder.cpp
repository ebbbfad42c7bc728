#include "parallel/engine/checkpoint_folder.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <vector>

#include "nn/atomic_save.h"
#include "tensor/error.h"

namespace ms {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStaging = ".tmp-";
constexpr const char* kAside = ".old-";
constexpr size_t kRunIdLength = 16;

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// "TAG" of "TAG.tmp-RUN" / "TAG.old-RUN", "" for any other name.
std::string leftover_tag(const std::string& name) {
  const size_t suffix = 5 + kRunIdLength;
  if (name.size() <= suffix) return "";
  const std::string kind = name.substr(name.size() - suffix, 5);
  const std::string run = name.substr(name.size() - kRunIdLength);
  if ((kind != kStaging && kind != kAside) ||
      run.find_first_not_of("0123456789abcdef") != std::string::npos)
    return "";
  return name.substr(0, name.size() - suffix);
}

bool has_complete(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p / "COMPLETE", ec);
}

// The leftovers of `tag` in `dir` whose name carries `kind`.
std::vector<fs::path> leftovers(const std::string& dir, const std::string& tag,
                                const std::string& kind) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (leftover_tag(name) == tag && name.compare(tag.size(), 5, kind) == 0)
      out.push_back(it->path());
  }
  return out;
}

// The one whose COMPLETE was written last: the newest save of the tag.
std::string newest_complete(const std::vector<fs::path>& candidates) {
  std::string best;
  fs::file_time_type best_time{};
  for (const fs::path& p : candidates) {
    std::error_code ec;
    if (!has_complete(p)) continue;
    const auto t = fs::last_write_time(p / "COMPLETE", ec);
    if (ec) continue;
    if (best.empty() || t > best_time) best = p.string(), best_time = t;
  }
  return best;
}

// A rename is durable once its directory is fsynced (the rename(2) man page);
// without it a power cut could undo the swap's steps out of order.
void sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void rename_or_throw(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    throw Error(str_cat("checkpoint: cannot rename '", from.string(), "' to '", to.string(),
                        "': ", std::strerror(errno)));
}

}  // namespace

void check_checkpoint_dir(const std::string& dir) {
  auto fail = [&](const std::string& why) {
    throw Error(str_cat("cannot save checkpoints in '", dir, "': ", why));
  };
  if (dir.empty()) fail("the path is empty");
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    fail(str_cat("it is ", file_type_name(st.st_mode), ", not a directory"));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(str_cat("cannot create it: ", ec.message()));
  // Permission bits do not answer it (root ignores them; a read-only mount
  // or /proc does not): write a file and remove it, as a save will.
  const std::string probe =
      (fs::path(dir) / str_cat(".probe.", host_name(), ".", ::getpid())).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(str_cat("cannot create a file in it: ", std::strerror(errno)));
  const bool wrote = ::write(fd, "x", 1) == 1;
  const int write_errno = errno;
  ::close(fd);
  if (::unlink(probe.c_str()) != 0)
    fail(str_cat("cannot remove a file from it: ", std::strerror(errno)));
  if (!wrote) fail(str_cat("cannot write a file in it: ", std::strerror(write_errno)));
}

std::string new_save_run_id() {
  std::random_device rd;
  const uint64_t id = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char buf[kRunIdLength + 1];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

std::string staging_dir(const std::string& dir, const std::string& tag, const std::string& run) {
  return (fs::path(dir) / (tag + kStaging + run)).string();
}

bool is_leftover_name(const std::string& name) { return !leftover_tag(name).empty(); }

std::string find_tag_dir(const std::string& dir, const std::string& tag) {
  std::error_code ec;
  const fs::path in_place = fs::path(dir) / tag;
  if (fs::is_directory(in_place, ec)) return in_place.string();
  const std::string staged = newest_complete(leftovers(dir, tag, kStaging));
  if (!staged.empty()) return staged;
  return newest_complete(leftovers(dir, tag, kAside));
}

void repair_checkpoint_dir(const std::string& dir) {
  std::set<std::string> tags;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string tag = leftover_tag(it->path().filename().string());
    if (!tag.empty()) tags.insert(tag);
  }
  for (const std::string& tag : tags) {
    const fs::path in_place = fs::path(dir) / tag;
    const std::string best = find_tag_dir(dir, tag);
    if (!best.empty() && best != in_place.string()) rename_or_throw(best, in_place);
    for (const char* kind : {kStaging, kAside})
      for (const fs::path& p : leftovers(dir, tag, kind)) fs::remove_all(p);
  }
  if (!tags.empty()) sync_dir(dir);
}

void publish_tag(const std::string& dir, const std::string& tag, const std::string& staged,
                 const std::string& run) {
  test_kill_point("complete");
  const fs::path in_place = fs::path(dir) / tag;
  const fs::path aside = fs::path(dir) / (tag + kAside + run);
  std::error_code ec;
  const bool had_old = fs::exists(in_place, ec);
  if (had_old) rename_or_throw(in_place, aside);
  test_kill_point("aside");
  rename_or_throw(staged, in_place);
  sync_dir(dir);
  test_kill_point("in-place");
  const std::string latest = (fs::path(dir) / "latest").string();
  AtomicFile f(latest, "checkpoint: '" + latest + "': ");
  f.write((tag + "\n").data(), tag.size() + 1);
  f.commit();
  sync_dir(dir);
  test_kill_point("latest");
  if (had_old) fs::remove_all(aside);
}

std::string complete_run_id(const std::string& tag_dir) {
  std::ifstream f(fs::path(tag_dir) / "COMPLETE");
  std::string line;
  std::getline(f, line);
  const size_t at = line.find(", run ");
  return at == std::string::npos ? "" : line.substr(at + 6);
}

void test_kill_point(const char* phase) {
  const char* want = std::getenv("MS_TEST_KILL_AT");
  if (want == nullptr || std::strcmp(want, phase) != 0) return;
  std::fflush(nullptr);
  std::raise(SIGKILL);
}

CheckpointDirLock::CheckpointDirLock(const std::string& dir) {
  fs::create_directories(dir);
  const std::string path = (fs::path(dir) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error(str_cat("checkpoint: cannot open the lock file '", path, "': ",
                        std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
  const int err = errno;
  ::close(fd_);
  fd_ = -1;
  if (err == EWOULDBLOCK)
    throw Error(str_cat("checkpoint: another job is saving into '", dir, "' (it holds '", path,
                        "'): give each job its own --checkpoint-dir"));
  // ENOLCK, EOPNOTSUPP...: no locking here; the run-id check at load remains.
}

CheckpointDirLock::~CheckpointDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace ms
