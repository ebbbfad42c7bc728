// expect: was written into the wrong place — an off-by-one block index
// Lesson 05, deliberately wrong: the all-gather writes the block it receives one place too far (r-s+1, not r-s).
#include <algorithm>

#include "lessons/05_collectives/lesson.h"

void my_ring_all_reduce(ms::Communicator& comm, ms::Tensor& t) {
  const int d = comm.size(), r = comm.rank();
  if (d == 1) return;
  const int64_t n = t.numel();
  ms::Tensor flat = ms::view(t, {-1});
  // Block c: the first n % d blocks get one extra element (n = 7, d = 4: 2,2,2,1).
  auto start = [&](int c) { return c * (n / d) + std::min<int64_t>(c, n % d); };
  auto block = [&](int c) { return ms::narrow(flat, 0, start(c), start(c + 1) - start(c)); };
  auto mod = [d](int x) { return ((x % d) + d) % d; };
  const int next = mod(r + 1), prev = mod(r - 1);

  // Reduce-scatter: at step s send block r-s, receive block r-s-1 and add it in.
  // After d-1 steps block r+1 holds the sum over all ranks.
  for (int s = 0; s < d - 1; ++s) {
    ms::Tensor mine = block(mod(r - s - 1));
    ms::Tensor incoming = ms::Tensor::empty(mine.shape());
    // Post both, then wait: a blocking send on every rank at once can deadlock.
    ms::Work rw = comm.irecv(incoming, prev);
    ms::Work sw = comm.isend(block(mod(r - s)), next);
    rw.wait();
    sw.wait();
    ms::add_(mine, incoming);
  }
  // All-gather: at step s pass on block r+1-s, receive block r-s straight into place.
  for (int s = 0; s < d - 1; ++s) {
    ms::Tensor dst = block(mod(r - s + 1));
    // r-s+1 is also the block this step sends: send a copy, so the wrong write
    // lands after the send's data left (without it the result depends on timing).
    ms::Tensor out = ms::clone(block(mod(r + 1 - s)));
    ms::Work rw = comm.irecv(dst, prev);
    ms::Work sw = comm.isend(out, next);
    rw.wait();
    sw.wait();
  }
}
