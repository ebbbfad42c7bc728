#include "nn/data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "nn/atomic_save.h"  // file_type_name

namespace ms {

TokenData TokenData::load(const std::string& path, double train_fraction) {
  MS_CHECK(train_fraction >= 0 && train_fraction <= 1, "TokenData::load: train_fraction ",
           train_fraction, " must be in [0, 1]");
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
  // forever. The type is checked on the open descriptor, so the file cannot be
  // swapped for another between the check and the map.
  struct Fd {
    int fd;
    ~Fd() {
      if (fd >= 0) ::close(fd);
    }
  } f{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
  MS_CHECK(f.fd >= 0, "--data: cannot open '", path, "': ", std::strerror(errno),
           " (give a file of raw bytes)");
  struct stat st;
  MS_CHECK(::fstat(f.fd, &st) == 0, "--data: cannot inspect '", path, "': ", std::strerror(errno));
  MS_CHECK(S_ISREG(st.st_mode), "--data: '", path, "' is not a regular file (it is ",
           file_type_name(st.st_mode), "); give a file of raw bytes");
  const size_t n = static_cast<size_t>(st.st_size);
  MS_CHECK(n > 0, "--data: '", path, "' is empty");
  void* p = ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE, f.fd, 0);  // outlives the descriptor
  MS_CHECK(p != MAP_FAILED, "--data: cannot map '", path, "' (", n,
           " bytes): ", std::strerror(errno));
  std::shared_ptr<const void> owner(p, [n](const void* q) { ::munmap(const_cast<void*>(q), n); });
  const auto* bytes = static_cast<const uint8_t*>(p);
  const size_t split = static_cast<size_t>(static_cast<double>(n) * train_fraction);
  return TokenData(std::move(owner), Bytes(bytes, split), Bytes(bytes + split, n - split));
}

TokenData::TokenData(std::vector<uint8_t> train, std::vector<uint8_t> val) {
  auto both = std::make_shared<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>>(
      std::move(train), std::move(val));
  train_ = both->first;
  val_ = both->second;
  owner_ = std::move(both);
}

Batch TokenData::window(Bytes buf, int64_t w, int64_t B, int64_t T, const char* split) {
  int64_t n = static_cast<int64_t>(buf.size()), bt = B * T;
  MS_CHECK(B > 0 && T > 0, "batch: batch size ", B, " and sequence length ", T,
           " must be positive");
  MS_CHECK(n >= bt + 1, "data: the ", split, " split has ", n, " bytes, fewer than one batch (",
           "batch-size ", B, " × seq-len ", T, " + 1 = ", bt + 1,
           "); use a smaller batch or more data");
  int64_t windows = (n - 1) / bt;
  int64_t offset = (w % windows) * bt;
  std::vector<int32_t> x(bt), y(bt);
  for (int64_t i = 0; i < bt; ++i) {
    x[i] = buf[offset + i];
    y[i] = buf[offset + i + 1];
  }
  return {from_vector(x, {B, T}), from_vector(y, {B, T})};
}

Batch TokenData::train_batch(int64_t step, int64_t rank, int64_t world, int64_t B,
                             int64_t T) const {
  return window(train_, step * world + rank, B, T, "training");
}

Batch TokenData::val_batch(int64_t index, int64_t B, int64_t T) const {
  return window(val_, index, B, T, "validation");
}

}  // namespace ms
