// TokenData::load maps the --data file: the batches are byte-for-byte those
// of the same bytes in memory (the data contract, nn/data.h), nothing is
// copied, and anything but a regular file is a clear error, never a hang.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>

#include "catch_compat.h"
#include "nn/data.h"
#include "tests/temp_dir.h"

using namespace ms;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

// Resident memory of this process (pages actually held), from /proc.
int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

std::string load_error(const std::string& path) {
  try {
    TokenData::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "loaded";
}

}  // namespace

TEST_CASE("TokenData::load gives the same batches as the bytes in memory", "[data]") {
  TempDir tmp;
  std::vector<uint8_t> bytes(10007);
  uint32_t state = 12345;
  for (uint8_t& b : bytes) b = static_cast<uint8_t>((state = state * 1664525u + 1013904223u) >> 24);
  const std::string path = tmp.file("corpus.bin");
  write_bytes(path, bytes);
  for (double fraction : {0.9, 0.5, 1.0 / 3}) {
    INFO("train_fraction " << fraction);
    const size_t split = static_cast<size_t>(static_cast<double>(bytes.size()) * fraction);
    TokenData mem(std::vector<uint8_t>(bytes.begin(), bytes.begin() + split),
                  std::vector<uint8_t>(bytes.begin() + split, bytes.end()));
    TokenData mapped = TokenData::load(path, fraction);
    REQUIRE(mapped.train_size() == mem.train_size());
    REQUIRE(mapped.val_size() == mem.val_size());
    TokenData copy = mapped;  // copies share the open file
    for (int64_t step : {0, 1, 7, 500}) {
      for (auto [B, T] : {std::pair<int64_t, int64_t>{2, 16}, {4, 33}}) {
        for (int64_t rank : {0, 1, 2}) {
          Batch a = mem.train_batch(step, rank, 3, B, T), b = copy.train_batch(step, rank, 3, B, T);
          CHECK(a.x.to_vector() == b.x.to_vector());
          CHECK(a.y.to_vector() == b.y.to_vector());
        }
        CHECK(mem.val_batch(step, B, T).x.to_vector() ==
              mapped.val_batch(step, B, T).x.to_vector());
        CHECK(mem.val_batch(step, B, T).y.to_vector() ==
              mapped.val_batch(step, B, T).y.to_vector());
      }
    }
  }
  CHECK_THROWS_WITH(TokenData::load(path, 1.5), Catch::Contains("train_fraction 1.5"));
}

// Regression: the file was read whole, then copied into the two splits
// (about 2.1x the file per rank). Mapped, untouched pages are not resident.
TEST_CASE("TokenData::load does not copy the file into memory", "[data]") {
  TempDir tmp;
  const std::string path = tmp.file("big.bin");
  const int64_t size = 64 << 20;
  std::ofstream(path).close();
  fs::resize_file(path, static_cast<uintmax_t>(size));  // sparse: zeros that take no memory
  const int64_t before = resident_bytes();
  TokenData data = TokenData::load(path);
  Batch b = data.train_batch(3, 0, 1, 4, 64);  // a batch touches only its own pages
  const int64_t grew = resident_bytes() - before;
  INFO("resident memory grew by " << grew << " bytes for a " << size << "-byte file");
  CHECK(grew < size / 8);
  CHECK(data.train_size() + data.val_size() == static_cast<size_t>(size));
  CHECK(b.x.to_vector()[0] == 0);
}

// Regression: /dev/zero was read until memory ran out, and a FIFO blocked forever.
TEST_CASE("TokenData::load refuses what is not a regular file", "[data]") {
  TempDir tmp;
  const std::string fifo = tmp.file("fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  // A writer holds the FIFO open, so a loader that reads it blocks (rather than
  // seeing EOF) until the writer closes it below: the test cannot hang.
  int writer = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK);
  REQUIRE(writer >= 0);
  auto result = std::async(std::launch::async, [&] { return load_error(fifo); });
  const bool finished = result.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  ::close(writer);
  const std::string msg = result.get();
  CHECK(finished);
  CHECK(msg ==
        "--data: '" + fifo + "' is not a regular file (it is a FIFO); give a file of raw bytes");

  if (fs::exists("/dev/zero"))
    CHECK(load_error("/dev/zero") ==
          "--data: '/dev/zero' is not a regular file (it is a character device); give a file of "
          "raw bytes");
  CHECK(load_error(tmp.dir.string()) ==
        "--data: '" + tmp.dir.string() +
            "' is not a regular file (it is a directory); give a file "
            "of raw bytes");
  CHECK(load_error(tmp.file("missing"))
            .find("cannot open '" + tmp.file("missing") + "': No such file") != std::string::npos);
  write_bytes(tmp.file("empty"), {});
  CHECK(load_error(tmp.file("empty")) == "--data: '" + tmp.file("empty") + "' is empty");
  // A symbolic link to a regular file is that file.
  write_bytes(tmp.file("real"), std::vector<uint8_t>(100, 'a'));
  fs::create_symlink(tmp.file("real"), tmp.file("link"));
  CHECK(TokenData::load(tmp.file("link")).train_size() == 90);
}

// Truncating --data under a running job killed it with SIGBUS (the file was
// mapped). Read with pread, the next batch past the new end is an error that
// names the file and both sizes; batches still inside it read as before.
TEST_CASE("a data file truncated while in use is an error, not SIGBUS", "[data]") {
  TempDir tmp;
  std::vector<uint8_t> bytes(4096, 'a');
  const std::string path = tmp.file("shrinks.bin");
  write_bytes(path, bytes);
  TokenData data = TokenData::load(path);
  REQUIRE(::truncate(path.c_str(), 100) == 0);
  CHECK(data.train_batch(0, 0, 1, 2, 8).x.to_vector().size() == 16);  // bytes 0..16: still there
  CHECK_THROWS_WITH(data.train_batch(20, 0, 1, 2, 8),
                    Catch::Contains("--data: the data file '" + path +
                                    "' was truncated while training (was 4096 bytes, now 100 "
                                    "bytes)"));
}
