// A pipeline timeline as a self-contained SVG: one row per stage, time on x,
// a box per forward and backward coloured by micro-batch (forward light,
// backward dark) and labelled ("F3", "B3", "F3.1" for chunk 1), and the idle
// time left grey and hatched, so the bubble is the hatched area. Drawn from
// boxes rather than from the simulator, so a measured run (each rank's
// recorded forward/backward start and end) can be drawn the same way.
#pragma once
#include <string>
#include <vector>

#include "parallel/pp/simulator.h"

namespace ms::pp {

struct TimelineBox {
  int row;  // stage
  double start, end;
  bool backward;
  int micro_batch;
  int chunk = 0;
};

struct TimelineStyle {
  std::string title;               // first line
  std::string subtitle;            // second line, e.g. the bubble beside its formula
  std::string time_unit = "unit";  // axis label: "unit" (forward = 1) or "ms"
  int micro_batches = 1;           // for the colours
  int virtual_stages = 1;          // chunk suffix in labels when > 1
};

// The forward and backward boxes of a simulated run.
std::vector<TimelineBox> timeline_boxes(const SimResult& r);

// Throws ms::Error if `rows` < 1 or a box has end < start or a row outside
// [0, rows).
std::string timeline_svg(const std::vector<TimelineBox>& boxes, int rows,
                         const TimelineStyle& style);

}  // namespace ms::pp
