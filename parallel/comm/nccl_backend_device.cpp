// One GPU per rank for the NCCL backend (nccl_backend.h): which device a
// rank takes, and the node-wide check that no two ranks take the same one.
// The two decisions are plain functions, in every build, so make test checks
// them (tests/test_gpu_plumbing.cpp); the MPI and CUDA calls around them are
// in a CUDA build only.
#include <string>
#include <vector>

#include "parallel/comm/nccl_backend.h"
#include "tensor/error.h"

namespace ms {

int local_gpu_index(int local_rank, int visible) {
  MS_ASSERT(visible > 0 && local_rank >= 0, "local_gpu_index(", local_rank, ", ", visible, ")");
  return local_rank % visible;
}

std::string shared_gpu_problem(const std::vector<std::string>& uuids) {
  for (size_t i = 0; i < uuids.size(); ++i) {
    if (uuids[i].empty()) continue;
    std::string ranks = std::to_string(i);
    int sharing = 1;
    for (size_t j = i + 1; j < uuids.size(); ++j)
      if (uuids[j] == uuids[i]) {
        ranks += ", " + std::to_string(j);
        ++sharing;
      }
    if (sharing > 1) return str_cat("local ranks ", ranks, " would share one GPU (", uuids[i], ")");
  }
  return "";
}

}  // namespace ms

#ifdef MS_CUDA

#include <mpi.h>

#include <climits>
#include <cstring>

#include "parallel/comm/runtime.h"
#include "tensor/cuda/runtime.h"

namespace ms {

namespace {

// The process's device, once chosen.
int g_device = -1;

std::string uuid_text(const cudaUUID_t& u) {
  static const char* hex = "0123456789abcdef";
  std::string s = "GPU-";
  for (int i = 0; i < 16; ++i) {
    const unsigned char b = static_cast<unsigned char>(u.bytes[i]);
    s += hex[b >> 4];
    s += hex[b & 15];
    if (i == 3 || i == 5 || i == 7 || i == 9) s += '-';  // nvidia-smi's grouping
  }
  return s;
}

int select_nccl_device_once() {
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
  int local_rank = 0, local_size = 1;
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_size(local, &local_size);
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  std::string problem;
  int device = -1;
  char uuid[64] = {};  // "" without a GPU
  if (rc != cudaSuccess || count == 0) {
    cudaGetLastError();
    problem = str_cat("no CUDA device is visible to this process (",
                      rc != cudaSuccess ? cudaGetErrorString(rc) : "cudaGetDeviceCount found 0",
                      "); the nccl backend moves GPU buffers: run where each rank has a GPU, or "
                      "use MS_BACKEND=mpi");
  } else {
    device = local_gpu_index(local_rank, count);
    cudaDeviceProp prop{};
    const cudaError_t prc = cudaGetDeviceProperties(&prop, device);
    if (prc != cudaSuccess)
      problem = str_cat("cudaGetDeviceProperties(", device, "): ", cudaGetErrorString(prc));
    else
      std::strncpy(uuid, uuid_text(prop.uuid).c_str(), sizeof(uuid) - 1);
  }
  // Every rank of the node learns every rank's GPU: one GPU with two ranks
  // is refused by NCCL ("invalid usage"), so say which ranks and how to run.
  std::vector<char> all(sizeof(uuid) * size_t(local_size));
  MPI_Allgather(uuid, sizeof(uuid), MPI_CHAR, all.data(), sizeof(uuid), MPI_CHAR, local);
  MPI_Comm_free(&local);
  std::vector<std::string> uuids;
  for (int r = 0; r < local_size; ++r) uuids.emplace_back(all.data() + size_t(r) * sizeof(uuid));
  if (problem.empty()) {
    const std::string shared = shared_gpu_problem(uuids);
    if (!shared.empty())
      problem = str_cat(
          local_size, " ranks run on one node where each sees ", count, " GPU(s): ", shared,
          ". The nccl backend needs a GPU per rank, because NCCL refuses two ranks of one "
          "communicator on one GPU (\"invalid usage\"). Start at most one rank per GPU (all GPUs "
          "visible, or CUDA_VISIBLE_DEVICES=<local rank> for each rank), or use MS_BACKEND=mpi, "
          "which moves CPU tensors");
  }
  // Every rank must agree, or the ranks without a problem would wait in
  // ncclCommInitRank forever: the first rank with one tells everybody.
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  int mine = problem.empty() ? INT_MAX : world_rank, first = INT_MAX;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first != INT_MAX) {
    char text[1024] = {};
    if (world_rank == first) std::strncpy(text, problem.c_str(), sizeof(text) - 1);
    MPI_Bcast(text, sizeof(text), MPI_CHAR, first, MPI_COMM_WORLD);
    throw AgreedError(str_cat("nccl backend (world rank ", first, "'s node): ", text));
  }
  cuda::check(cudaSetDevice(device), "cudaSetDevice (nccl backend)", __FILE__, __LINE__);
  return device;
}

}  // namespace

// Chosen once, by the first NCCL backend, which is made on every rank of the
// world (Communicator::world(BackendKind::NCCL)): the checks are collectives
// over MPI_COMM_WORLD and the node's communicator.
int select_nccl_device() {
  if (g_device < 0) g_device = select_nccl_device_once();
  return g_device;
}

}  // namespace ms

#endif  // MS_CUDA
