#include "cli/output_paths.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "nn/atomic_save.h"
#include "tensor/error.h"

namespace ms {

void check_output_path(const std::string& flag, const std::string& path) {
  namespace fs = std::filesystem;
  try {
    check_save_path(path);
  } catch (const Error& e) {
    throw Error(str_cat(flag, ": ", e.what()));
  }
  // The nearest directory that exists: the target's, or the ancestor that
  // the save would create the missing directories under.
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  while (!fs::is_directory(dir, ec) && dir.has_parent_path() && dir.parent_path() != dir)
    dir = dir.parent_path();
  const std::string probe =
      (dir / str_cat(".minispeed-probe.", fs::path(path).filename().string(), ".", ::getpid()))
          .string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    throw Error(str_cat(flag, ": cannot save to '", path, "': cannot create a file in '",
                        dir.string(), "': ", std::strerror(errno)));
  ::close(fd);
  ::unlink(probe.c_str());
}

void check_not_an_input(const std::string& flag, const std::string& path,
                        const std::string& input_flag, const std::string& input_path) {
  if (input_path.empty()) return;
  std::error_code ec;
  if (std::filesystem::equivalent(path, input_path, ec))
    throw Error(str_cat(flag, ": '", path, "' is the ", input_flag, " file '", input_path,
                        "': saving would overwrite it; choose another path"));
}

}  // namespace ms
