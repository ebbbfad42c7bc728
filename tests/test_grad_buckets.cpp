// GradBuckets (parallel/dp/grad_buckets.h) on its own, with fake collectives:
// the order buckets launch and complete in, the in-flight bound, and what a
// flush launches. No MPI: a launch returns a Work the test finishes by hand.
#include <memory>
#include <string>
#include <vector>

#include "parallel/dp/grad_buckets.h"
#include "tests/catch_compat.h"

using namespace ms;

namespace {

struct FakeWork : Work::Impl {
  bool done = false;
  bool test() override { return done; }
  void wait() override { done = true; }
};

// Records "L<k>" for each launch and "C<k>" for each completion.
struct Recorder {
  std::vector<std::string> log;
  std::vector<std::shared_ptr<FakeWork>> work;
  GradBuckets make(std::vector<std::vector<int>> buckets, int num_params, int max_in_flight) {
    return GradBuckets(
        std::move(buckets), num_params, max_in_flight,
        [this](int k) {
          log.push_back(str_cat("L", k));  // (not "L" + to_string: GCC 12 warns falsely)
          work.push_back(std::make_shared<FakeWork>());
          return Work(work.back());
        },
        [this](int k) { log.push_back(str_cat("C", k)); });
  }
};

using Log = std::vector<std::string>;

}  // namespace

TEST_CASE("GradBuckets launches in bucket order, whatever order gradients arrive in",
          "[grad_buckets]") {
  Recorder r;
  GradBuckets b = r.make({{3, 2}, {1}, {0}}, 4, 0);
  b.grad_ready(1);  // bucket 1 is complete, but bucket 0 is not out yet
  CHECK(r.log.empty());
  b.grad_ready(3);
  CHECK(r.log.empty());
  b.grad_ready(2);  // bucket 0 complete: 0 and then the waiting 1 launch
  CHECK(r.log == Log{"L0", "L1"});
  b.grad_ready(0);
  CHECK(r.log == Log{"L0", "L1", "L2"});
  b.flush(GradBuckets::IfIdle::LaunchAll);  // nothing left to launch: completes only
  CHECK(r.log == Log{"L0", "L1", "L2", "C0", "C1", "C2"});
  CHECK(b.launched_during_backward() == 3);
  CHECK(b.in_flight().empty());
}

TEST_CASE("GradBuckets bounds what is in flight, completing the oldest first", "[grad_buckets]") {
  Recorder r;
  GradBuckets b = r.make({{3}, {2}, {1}, {0}}, 4, 2);
  b.grad_ready(3);
  r.work[0]->done = true;  // bucket 0 finishes by itself: the next poll completes it
  b.grad_ready(2);
  CHECK(r.log == Log{"L0", "L1", "C0"});
  b.grad_ready(1);  // buckets 1 and 2 in flight: the bound is reached, not exceeded
  CHECK(r.log == Log{"L0", "L1", "C0", "L2"});
  b.grad_ready(0);  // a third would exceed it: the oldest, bucket 1, completes first
  CHECK(r.log == Log{"L0", "L1", "C0", "L2", "C1", "L3"});
  CHECK(b.in_flight().size() == 2);
  b.flush(GradBuckets::IfIdle::Skip);
  CHECK(r.log == Log{"L0", "L1", "C0", "L2", "C1", "L3", "C2", "C3"});
}

TEST_CASE("GradBuckets flush: the rest of a started round, and an idle round", "[grad_buckets]") {
  SECTION("a parameter that got no gradient: its bucket launches at the flush") {
    Recorder r;
    GradBuckets b = r.make({{2}, {1, 0}}, 3, 0);
    b.grad_ready(2);
    b.grad_ready(1);  // parameter 0 never gets a gradient
    b.flush(GradBuckets::IfIdle::Skip);
    CHECK(r.log == Log{"L0", "L1", "C0", "C1"});
    CHECK(b.launched_during_backward() == 1);
    // The next backward is a new round.
    r.log.clear();
    b.grad_ready(2);
    CHECK(r.log == Log{"L0"});
  }
  SECTION("no gradient at all: LaunchAll sends everything, Skip nothing") {
    Recorder r;
    GradBuckets b = r.make({{1}, {0}}, 2, 0);
    b.flush(GradBuckets::IfIdle::Skip);
    CHECK(r.log.empty());
    b.flush(GradBuckets::IfIdle::LaunchAll);
    CHECK(r.log == Log{"L0", "L1", "C0", "C1"});
    CHECK(b.launched_during_backward() == 0);
  }
  SECTION("a round that launched everything during backward launches nothing more") {
    Recorder r;
    GradBuckets b = r.make({{1}, {0}}, 2, 0);
    b.grad_ready(1);
    b.grad_ready(0);
    b.flush(GradBuckets::IfIdle::LaunchAll);
    CHECK(r.log == Log{"L0", "L1", "C0", "C1"});
  }
}
