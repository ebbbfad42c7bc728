// Where a save may go (nn/atomic_save.h): never over a device, FIFO or
// directory; through symbolic links; temporaries of killed saves cleaned up.
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "autograd/ops.h"
#include "catch_compat.h"
#include "nn/safetensors.h"
#include "tests/temp_dir.h"

using namespace ms;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string this_host() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// A pid that is surely not running: a child that has exited and been reaped.
pid_t dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

size_t entries(const fs::path& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace

// Regression: the temp-file-then-rename save replaced whatever held the name,
// so as root `--save-weights /dev/null` turned the device into a regular file.
TEST_CASE("safetensors never replaces a device, FIFO or directory", "[safetensors][save]") {
  TempDir tmp;
  const std::map<std::string, Tensor> w = {{"x", ones({4})}};
  std::string fifo = tmp.file("fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  CHECK_THROWS_WITH(save_safetensors(fifo, w), Catch::Contains(fifo) &&
                                                   Catch::Contains("not a regular file") &&
                                                   Catch::Contains("FIFO"));
  CHECK(fs::is_fifo(fifo));
  CHECK_THROWS_WITH(check_save_path(fifo), Catch::Contains(fifo) && Catch::Contains("FIFO"));
  // A character device like /dev/null (mknod needs root; skipped otherwise).
  std::string dev = tmp.file("null");
  if (::mknod(dev.c_str(), S_IFCHR | 0666, ::makedev(1, 3)) == 0) {
    CHECK_THROWS_WITH(save_safetensors(dev, w), Catch::Contains("character device"));
    CHECK(fs::is_character_file(dev));
    CHECK_THROWS_WITH(check_save_path(dev), Catch::Contains("character device"));
  }
  CHECK_THROWS_WITH(check_save_path(tmp.dir.string()), Catch::Contains("is a directory"));
  CHECK_THROWS_WITH(check_save_path(tmp.file("sub/")), Catch::Contains("ends with '/'"));
  CHECK_THROWS_WITH(check_save_path(""), Catch::Contains("empty"));
  CHECK(entries(tmp.dir) == (fs::exists(dev) ? 2u : 1u));  // no temporary left behind
}

TEST_CASE("check_save_path: parents that are files, directories still to create",
          "[safetensors][save]") {
  TempDir tmp;
  std::string file = tmp.file("f");
  write_bytes(file, "x");
  CHECK_NOTHROW(check_save_path(file));  // an existing regular file is replaced
  CHECK_THROWS_WITH(check_save_path(file + "/w.safetensors"),
                    Catch::Contains(file + "/w.safetensors") &&
                        Catch::Contains("parent '" + file) && Catch::Contains("not a directory"));
  CHECK_THROWS_WITH(check_save_path(file + "/deeper/w.safetensors"),
                    Catch::Contains("parent '" + file));
  // Missing directories are fine for the check (train creates them before saving)...
  std::string nested = tmp.file("a/b/w.safetensors");
  CHECK_NOTHROW(check_save_path(nested));
  CHECK_FALSE(fs::exists(tmp.file("a")));  // ...and the check itself creates nothing
  // ...but save_safetensors, which does not create them, names the missing one.
  CHECK_THROWS_WITH(save_safetensors(nested, {{"x", ones({1})}}),
                    Catch::Contains("directory '" + tmp.file("a/b") + "' does not exist"));
}

// Decision: a symbolic link is followed (its target is written, the link kept),
// as open(O_TRUNC) — torch.save, numpy.save, shell `>` — does. The rename used
// to replace the link itself with a regular file.
TEST_CASE("safetensors saves through a symbolic link and keeps it", "[safetensors][save]") {
  TempDir tmp;
  std::string real = tmp.file("real.safetensors"), link = tmp.file("latest.safetensors");
  save_safetensors(real, {{"x", ones({1})}});
  fs::create_symlink("real.safetensors", link);  // relative, as `ln -s` makes them
  save_safetensors(link, {{"x", zeros({3})}});
  CHECK(fs::is_symlink(link));
  CHECK(load_safetensors(real).tensors.at("x").shape() == Shape{3});
  // A dangling link creates its target.
  std::string dangling = tmp.file("dangling"), target = tmp.file("made.safetensors");
  fs::create_symlink(target, dangling);
  save_safetensors(dangling, {{"x", ones({2})}});
  CHECK(fs::is_symlink(dangling));
  CHECK(load_safetensors(target).tensors.at("x").shape() == Shape{2});
  // A link to something that is not a regular file is refused, naming both.
  std::string fifo = tmp.file("fifo"), to_fifo = tmp.file("to_fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  fs::create_symlink(fifo, to_fifo);
  CHECK_THROWS_WITH(save_safetensors(to_fifo, {{"x", ones({1})}}),
                    Catch::Contains(to_fifo) && Catch::Contains("FIFO") &&
                        Catch::Contains("symbolic link to '" + fifo + "'"));
  CHECK_THROWS_WITH(check_save_path(to_fifo), Catch::Contains("FIFO"));
  fs::create_symlink(tmp.file("loop2"), tmp.file("loop1"));
  fs::create_symlink(tmp.file("loop1"), tmp.file("loop2"));
  CHECK_THROWS_WITH(check_save_path(tmp.file("loop1")), Catch::Contains("symbolic links"));
  CHECK(fs::is_fifo(fifo));
  CHECK(entries(tmp.dir) == 8);  // the files and links above; no temporary left behind
}

// A save killed mid-write (SIGKILL, Ctrl-C) cannot remove its temporary file;
// the next save beside it removes those of dead processes of this host.
TEST_CASE("safetensors removes temporaries of killed saves", "[safetensors][save]") {
  TempDir tmp;
  std::string path = tmp.file("ckpt.safetensors");
  std::string prefix = path + ".tmp." + this_host() + ".";
  std::string stale = prefix + std::to_string(dead_pid());
  std::string alive = prefix + "1";  // init runs: another save may be in progress
  std::string other_host = path + ".tmp.some-other-host." + std::to_string(dead_pid());
  std::string other_file =
      tmp.file("other.safetensors.tmp." + this_host() + "." + std::to_string(dead_pid()));
  for (const std::string& f : {stale, alive, other_host, other_file}) write_bytes(f, "partial");
  save_safetensors(path, {{"x", ones({1})}});
  CHECK_FALSE(fs::exists(stale));
  CHECK(fs::exists(alive));
  CHECK(fs::exists(other_host));  // a pid of another machine means nothing here
  CHECK(fs::exists(other_file));  // another checkpoint's business
  CHECK(load_safetensors(path).tensors.at("x").numel() == 1);
}
