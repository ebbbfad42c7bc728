#include "nn/data.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "nn/atomic_save.h"  // file_type_name

namespace ms {

struct TokenData::Source {
  std::vector<uint8_t> memory;  // when not a file
  int fd = -1;
  std::string path;
  size_t size = 0;  // bytes, as when loaded
  Source() = default;
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;
  ~Source() {
    if (fd >= 0) ::close(fd);
  }

  // Copies bytes [at, at + n) to out.
  void read(size_t at, size_t n, uint8_t* out) const {
    if (fd < 0) {
      std::memcpy(out, memory.data() + at, n);
      return;
    }
    for (size_t done = 0; done < n;) {
      const ssize_t got = ::pread(fd, out + done, n - done, static_cast<off_t>(at + done));
      if (got < 0 && errno == EINTR) continue;
      MS_CHECK(got >= 0, "--data: reading '", path, "' failed: ", std::strerror(errno));
      if (got == 0) {  // end of file before the batch's last byte: the file shrank
        struct stat st;
        const std::string now =
            ::fstat(fd, &st) == 0 ? str_cat(st.st_size, " bytes") : "size unknown";
        throw Error(str_cat("--data: the data file '", path, "' was truncated while training (was ",
                            size, " bytes, now ", now, ")"));
      }
      done += static_cast<size_t>(got);
    }
  }
};

TokenData TokenData::load(const std::string& path, double train_fraction) {
  MS_CHECK(train_fraction >= 0 && train_fraction <= 1, "TokenData::load: train_fraction ",
           train_fraction, " must be in [0, 1]");
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
  // forever. The type is checked on the open descriptor, so the file cannot be
  // swapped for another between the check and the reads.
  auto source = std::make_shared<Source>();
  source->path = path;
  source->fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  MS_CHECK(source->fd >= 0, "--data: cannot open '", path, "': ", std::strerror(errno),
           " (give a file of raw bytes)");
  struct stat st;
  MS_CHECK(::fstat(source->fd, &st) == 0, "--data: cannot inspect '", path,
           "': ", std::strerror(errno));
  MS_CHECK(S_ISREG(st.st_mode), "--data: '", path, "' is not a regular file (it is ",
           file_type_name(st.st_mode), "); give a file of raw bytes");
  const size_t n = static_cast<size_t>(st.st_size);
  MS_CHECK(n > 0, "--data: '", path, "' is empty");
  source->size = n;
  const size_t split = static_cast<size_t>(static_cast<double>(n) * train_fraction);
  return TokenData(std::move(source), split, n);
}

TokenData::TokenData(std::vector<uint8_t> train, std::vector<uint8_t> val) {
  auto source = std::make_shared<Source>();
  split_ = train.size();
  source->memory = std::move(train);
  source->memory.insert(source->memory.end(), val.begin(), val.end());
  source->size = size_ = source->memory.size();
  source_ = std::move(source);
}

Batch TokenData::window(size_t begin, size_t size, int64_t w, int64_t B, int64_t T,
                        const char* split) const {
  int64_t n = static_cast<int64_t>(size), bt = B * T;
  MS_CHECK(B > 0 && T > 0, "batch: batch size ", B, " and sequence length ", T,
           " must be positive");
  MS_CHECK(n >= bt + 1, "data: the ", split, " split has ", n, " bytes, fewer than one batch (",
           "batch-size ", B, " × seq-len ", T, " + 1 = ", bt + 1,
           "); use a smaller batch or more data");
  int64_t windows = (n - 1) / bt;
  int64_t offset = (w % windows) * bt;
  std::vector<uint8_t> buf(static_cast<size_t>(bt + 1));
  source_->read(begin + static_cast<size_t>(offset), buf.size(), buf.data());
  std::vector<int32_t> x(bt), y(bt);
  for (int64_t i = 0; i < bt; ++i) {
    x[i] = buf[i];
    y[i] = buf[i + 1];
  }
  return {from_vector(x, {B, T}), from_vector(y, {B, T})};
}

Batch TokenData::train_batch(int64_t step, int64_t rank, int64_t world, int64_t B,
                             int64_t T) const {
  return window(0, split_, step * world + rank, B, T, "training");
}

Batch TokenData::val_batch(int64_t index, int64_t B, int64_t T) const {
  return window(split_, size_ - split_, index, B, T, "validation");
}

}  // namespace ms
