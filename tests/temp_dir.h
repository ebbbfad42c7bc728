// A fresh directory per test case, removed afterwards (shared by the tests
// that write files: safetensors, weights, data, the CLI).
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>

namespace ms::test {

struct TempDir {
  std::filesystem::path dir;
  explicit TempDir(const std::string& tag = "test") {
    static int counter = 0;
    dir = std::filesystem::temp_directory_path() /
          ("minispeed_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~TempDir() { std::filesystem::remove_all(dir); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

}  // namespace ms::test
