// Output paths are checked before step 1, not at the first write after
// training: a --save-weights under /proc, or a --timeline whose directory is a
// file, must not cost the run (docs/architecture.md: user errors up front).
#pragma once
#include <string>

namespace ms {

// Throws an ms::Error starting "<flag>: " when a file cannot be written at
// `path`: check_save_path's checks (nn/atomic_save.h: not a directory, not a
// device, a directory that exists or can be created and takes a new file).
void check_output_path(const std::string& flag, const std::string& path);

// Throws when `path` (an output) is the same file as `input_path` (through
// links or another spelling), read for `input_flag`: `--save-weights
// data.txt --data data.txt` would replace the training data by the weights.
void check_not_an_input(const std::string& flag, const std::string& path,
                        const std::string& input_flag, const std::string& input_path);

}  // namespace ms
