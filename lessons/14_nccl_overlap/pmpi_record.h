// Lesson 14's profiling layer: what the learner's code did with MPI, in
// order, seen through MPI's profiling interface. The MPI standard gives every
// function a second name, PMPI_*; a program that defines MPI_Iallreduce itself
// takes the place of the library's and forwards to PMPI_Iallreduce (mpiP and
// other MPI profilers work this way). Only check.cpp includes this file, once:
// the MPI_* definitions below are that program's.
#pragma once
#include <mpi.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "tensor/error.h"

namespace lesson14 {

constexpr int kLayers = 8;

// What one call of overlapped_backward did; recorded only while `on`.
struct Record {
  bool on = false;
  bool in_poll = false;
  std::vector<float*> buckets;                     // bucket l's buffer
  std::map<MPI_Request, int> pending;              // request -> bucket, started and not complete
  std::vector<int> started_at_layer_done;          // bucket -> layers finished when it started (-1: never)
  std::vector<int> completed_at_layer_started;     // bucket -> layers started when it completed
  std::vector<bool> started_while_filling;         // bucket l started while layer l ran or before
  int layers_started = 0, layers_done = 0;
  int blocking_calls = 0, calls_in_poll = 0, polls = 0;
  std::vector<std::string> unknown;                // all-reduces of buffers that are no bucket
  // The timeline, in ms since the learner's call began (t0): when bucket b's
  // all-reduce was issued and when an MPI call first reported it complete
  // (what a profiler can see: MPI does not say when the bytes finished moving,
  // only when a Test or Wait returned "done"); when layer l's compute ran.
  std::chrono::steady_clock::time_point t0;
  std::vector<double> issued_ms, completed_ms;     // per bucket, -1: never
  std::vector<double> compute_start_ms, compute_end_ms;  // per layer, -1: never ran
};
inline Record rec;

inline double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - rec.t0)
      .count();
}

inline int bucket_of(const void* buf) {
  for (size_t l = 0; l < rec.buckets.size(); ++l)
    if (buf == rec.buckets[l]) return int(l);
  return -1;
}

inline void note_start(const void* sendbuf, void* recvbuf, int count, double issued_ms) {
  const void* buf = sendbuf == MPI_IN_PLACE ? recvbuf : sendbuf;
  const int b = bucket_of(buf);
  if (b < 0) {
    rec.unknown.push_back(ms::str_cat(count, " floats"));
    return;
  }
  rec.started_at_layer_done[size_t(b)] = rec.layers_done;
  rec.issued_ms[size_t(b)] = issued_ms;
  // Layers run from kLayers-1 down: bucket b is final once kLayers - b layers are done.
  if (rec.layers_done < kLayers - b) rec.started_while_filling[size_t(b)] = true;
}

inline void note_complete(MPI_Request r) {
  auto it = rec.pending.find(r);
  if (it == rec.pending.end()) return;
  rec.completed_at_layer_started[size_t(it->second)] = rec.layers_started;
  rec.completed_ms[size_t(it->second)] = now_ms();
  rec.pending.erase(it);
}

inline void note_call() {
  if (rec.in_poll) ++rec.calls_in_poll;
}

}  // namespace lesson14

// MPI's profiling interface: these definitions take the place of the MPI
// library's, and forward to its PMPI_ entry points. Outside the learner's
// call (rec.on false) they only forward.
using lesson14::rec;
using lesson14::bucket_of;
using lesson14::note_call;
using lesson14::note_complete;
using lesson14::note_start;

extern "C" {
int MPI_Iallreduce(const void* s, void* r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c,
                   MPI_Request* req) {
  const double issued = rec.on ? lesson14::now_ms() : 0;
  const int rc = PMPI_Iallreduce(s, r, n, t, op, c, req);
  if (rec.on) {
    note_call();
    note_start(s, r, n, issued);
    const int b = bucket_of(s == MPI_IN_PLACE ? r : s);
    if (b >= 0) rec.pending[*req] = b;
  }
  return rc;
}
int MPI_Allreduce(const void* s, void* r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c) {
  const double issued = rec.on ? lesson14::now_ms() : 0;
  const int rc = PMPI_Allreduce(s, r, n, t, op, c);
  if (rec.on) {
    note_call();
    note_start(s, r, n, issued);
    ++rec.blocking_calls;
    const int b = bucket_of(s == MPI_IN_PLACE ? r : s);
    if (b >= 0) {
      rec.completed_at_layer_started[size_t(b)] = rec.layers_started;
      rec.completed_ms[size_t(b)] = lesson14::now_ms();
    }
  }
  return rc;
}
int MPI_Wait(MPI_Request* req, MPI_Status* st) {
  const MPI_Request r = *req;
  const int rc = PMPI_Wait(req, st);
  if (rec.on) note_call(), note_complete(r);
  return rc;
}
int MPI_Waitall(int n, MPI_Request reqs[], MPI_Status sts[]) {
  std::vector<MPI_Request> before(reqs, reqs + n);
  const int rc = PMPI_Waitall(n, reqs, sts);
  if (rec.on) {
    note_call();
    for (MPI_Request r : before) note_complete(r);
  }
  return rc;
}
int MPI_Test(MPI_Request* req, int* flag, MPI_Status* st) {
  const MPI_Request r = *req;
  const int rc = PMPI_Test(req, flag, st);
  if (rec.on) {
    note_call();
    if (*flag) note_complete(r);
  }
  return rc;
}
int MPI_Testall(int n, MPI_Request reqs[], int* flag, MPI_Status sts[]) {
  std::vector<MPI_Request> before(reqs, reqs + n);
  const int rc = PMPI_Testall(n, reqs, flag, sts);
  if (rec.on) {
    note_call();
    if (*flag)
      for (MPI_Request r : before) note_complete(r);
  }
  return rc;
}
int MPI_Testsome(int n, MPI_Request reqs[], int* outcount, int idx[], MPI_Status sts[]) {
  std::vector<MPI_Request> before(reqs, reqs + n);
  const int rc = PMPI_Testsome(n, reqs, outcount, idx, sts);
  if (rec.on) {
    note_call();
    for (int i = 0; i < *outcount && *outcount != MPI_UNDEFINED; ++i) note_complete(before[size_t(idx[i])]);
  }
  return rc;
}
int MPI_Waitany(int n, MPI_Request reqs[], int* idx, MPI_Status* st) {
  std::vector<MPI_Request> before(reqs, reqs + n);
  const int rc = PMPI_Waitany(n, reqs, idx, st);
  if (rec.on) {
    note_call();
    if (*idx != MPI_UNDEFINED) note_complete(before[size_t(*idx)]);
  }
  return rc;
}
}
