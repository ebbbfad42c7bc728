#include "nn/atomic_save.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "tensor/error.h"

namespace ms {

namespace fs = std::filesystem;

const char* file_type_name(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISLNK(m)) return "a symbolic link";
  return "a special file";
}

namespace {

// Follows `path` through symbolic links to the name a save replaces. Renaming
// over the link itself would turn it into a plain file; writing its target is
// what open(O_TRUNC) does, so torch.save, numpy.save and `>` all behave so.
// Returns "" and sets `problem` on a loop or an unreadable link.
std::string resolve_links(const std::string& path, std::string& problem) {
  std::string p = path;
  for (int hops = 0; hops < 40; ++hops) {  // Linux's MAXSYMLINKS
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p;
    std::error_code ec;
    fs::path to = fs::read_symlink(p, ec);
    if (ec) {
      problem = str_cat("cannot read the symbolic link '", p, "': ", ec.message());
      return "";
    }
    p = to.is_absolute() ? to.string() : (fs::path(p).parent_path() / to).string();
  }
  problem = "too many levels of symbolic links";
  return "";
}

// Why a file cannot be saved at `target` (links resolved), or "" if it can.
// `may_create_dirs`: a missing directory is fine when it can be created.
std::string save_problem(const std::string& target, bool may_create_dirs) {
  const fs::path t(target);
  if (!t.has_filename()) return "names a directory (ends with '/'), not a file";
  struct stat st;
  if (::stat(target.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return "is a directory";
    if (!S_ISREG(st.st_mode))
      return str_cat("exists and is not a regular file (it is ", file_type_name(st.st_mode), ")");
  } else if (errno != ENOENT && errno != ENOTDIR) {  // ENOTDIR: the walk below names the file
    return str_cat("cannot inspect it: ", std::strerror(errno));
  }
  // The temporary file and the rename need the target's directory, writable.
  auto parent = [](const fs::path& p) {
    fs::path q = p.parent_path();
    return q.empty() ? fs::path(".") : q;
  };
  const fs::path dir = parent(t);
  fs::path existing = dir;  // the nearest ancestor that exists
  while (::stat(existing.c_str(), &st) != 0) {
    if (errno != ENOENT && errno != ENOTDIR)
      return str_cat("cannot inspect '", existing.string(), "': ", std::strerror(errno));
    fs::path up = parent(existing);
    if (up == existing) return str_cat("cannot inspect '", existing.string(), "'");
    existing = up;
  }
  if (!S_ISDIR(st.st_mode))
    return str_cat("parent '", existing.string(), "' is ", file_type_name(st.st_mode),
                   ", not a directory");
  if (existing != dir && !may_create_dirs)
    return str_cat("cannot create the file: directory '", dir.string(), "' does not exist");
  if (::access(existing.c_str(), W_OK | X_OK) != 0) {
    if (existing != dir)
      return str_cat("cannot create directory '", dir.string(), "': '", existing.string(),
                     "' is not writable (", std::strerror(errno), ")");
    return str_cat("directory '", dir.string(), "' is not writable (", std::strerror(errno), ")");
  }
  // Permission bits do not settle it: root passes access() on /proc and on
  // directories whose file system refuses new files. So create a file there,
  // as the save will, and remove it. (AtomicFile, the other caller, creates
  // its temporary file right after this anyway.)
  if (may_create_dirs) {
    const fs::path probe = existing / str_cat(".minispeed-probe.", ::getpid());
    const int fd =
        ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
      return str_cat("cannot create a file in '", existing.string(), "': ", std::strerror(errno));
    ::close(fd);
    ::unlink(probe.c_str());
  }
  return "";
}

std::string through_link(const std::string& problem, const std::string& path,
                         const std::string& target) {
  if (target == path) return problem;
  return str_cat(problem, " (following the symbolic link to '", target, "')");
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// Removes "<target>.tmp.<host>.<pid>" files whose process is gone. Only this
// host's: a pid means nothing on another machine sharing the file system.
void remove_stale_temps(const std::string& target, const std::string& host) {
  const fs::path t(target);
  const fs::path dir = t.parent_path().empty() ? fs::path(".") : t.parent_path();
  const std::string prefix = t.filename().string() + ".tmp." + host + ".";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to signal)
    ::unlink(it->path().c_str());
  }
}

}  // namespace

void check_save_path(const std::string& path) {
  auto fail = [&](const std::string& problem) {
    throw Error(str_cat("cannot save to '", path, "': ", problem));
  };
  if (path.empty()) fail("the path is empty");
  std::string problem;
  const std::string target = resolve_links(path, problem);
  if (!problem.empty()) fail(problem);
  problem = save_problem(target, true);
  if (!problem.empty()) fail(through_link(problem, path, target));
}

AtomicFile::AtomicFile(const std::string& path, std::string who) : who_(std::move(who)) {
  std::string problem;
  target_ = resolve_links(path, problem);
  if (!problem.empty()) fail(problem);
  problem = save_problem(target_, false);
  if (!problem.empty()) fail(through_link(problem, path, target_));
  // Host and pid in the name: ranks writing beside each other, even on a
  // shared file system, never share a temporary file.
  tmp_ = str_cat(target_, ".tmp.", host_name(), ".", ::getpid());
  ::unlink(tmp_.c_str());  // our own name; O_EXCL then refuses a link planted there
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(str_cat("cannot create '", tmp_, "': ", std::strerror(errno)));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::fail(const std::string& what) const {
  throw Error(who_ + what);
}

void AtomicFile::write(const void* data, size_t n) {
  for (const char* p = static_cast<const char*>(data); n > 0;) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail(str_cat("write to '", tmp_, "' failed: ", std::strerror(errno)));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) fail(str_cat("fsync of '", tmp_, "' failed: ", std::strerror(errno)));
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail(str_cat("close of '", tmp_, "' failed: ", std::strerror(errno)));
  if (::rename(tmp_.c_str(), target_.c_str()) != 0)
    fail(str_cat("cannot rename '", tmp_, "' over it: ", std::strerror(errno)));
  committed_ = true;
  remove_stale_temps(target_, host_name());
}

}  // namespace ms
