#include "cli/output_paths.h"

#include <filesystem>

#include "nn/atomic_save.h"
#include "tensor/error.h"

namespace ms {

void check_output_path(const std::string& flag, const std::string& path) {
  try {
    check_save_path(path);
  } catch (const Error& e) {
    throw Error(str_cat(flag, ": ", e.what()));
  }
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
