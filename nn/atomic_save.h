// Saving a file so that neither a crash nor a bad path loses data: where a
// save may go (checked before hours of training, not after), and the write
// itself (a temporary file beside the target, fsynced, then renamed over it,
// the way llm.c and most checkpoint writers make a save all-or-nothing).
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <string>

namespace ms {

// "a regular file", "a directory", "a FIFO", "a character device"... for
// errors about a path that is the wrong kind of file (st_mode from stat).
const char* file_type_name(mode_t mode);

// Throws ms::Error "cannot save to '<path>': <problem>" when a file could not
// be saved at `path`: it is a directory; it exists and is not a regular file
// (a device, FIFO or socket); a parent is a file; the directory is not
// writable, or missing and cannot be created (its nearest existing ancestor
// is not a writable directory, or a file cannot be created in it: a probe file
// is created and removed, since root passes permission checks on /proc). A
// missing directory that can be created is fine: the caller creates it before
// saving. A symbolic link is followed: the
// save writes the file it points to and the link stays.
void check_save_path(const std::string& path);

// One file written all-or-nothing. The temporary file is named
// "<target>.tmp.<host>.<pid>"; the destructor removes it unless commit() ran.
// A process killed mid-save (SIGKILL, Ctrl-C) cannot clean up after itself, so
// each commit also removes the temporaries beside it left by dead processes
// of this host. Errors are ms::Error starting with `who` (e.g.
// "save_safetensors: '<path>': ").
class AtomicFile {
 public:
  // Resolves symbolic links, refuses targets check_save_path would refuse
  // (but the directory must already exist), and creates the temporary file.
  AtomicFile(const std::string& path, std::string who);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  // fsync, close, rename over the target. Without the fsync a crash could
  // leave the real name on data that never reached the disk.
  void commit();

  const std::string& target() const { return target_; }  // `path`, links resolved

 private:
  [[noreturn]] void fail(const std::string& what) const;
  std::string who_, target_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace ms
