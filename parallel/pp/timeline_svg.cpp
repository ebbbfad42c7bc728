// The timeline SVG (see timeline_svg.h). Plain SVG 1.1 with a hatch pattern,
// no scripts or external fonts, so it opens in any browser.
#include "parallel/pp/timeline_svg.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "tensor/error.h"

namespace ms::pp {

namespace {

std::string escape_xml(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Micro-batches spread around the hue circle; backward darker than forward.
std::string colour(int micro_batch, int micro_batches, bool backward) {
  int hue = static_cast<int>(std::lround(360.0 * micro_batch / std::max(1, micro_batches))) % 360;
  std::ostringstream c;
  c << "hsl(" << hue << ",70%," << (backward ? 42 : 72) << "%)";
  return c.str();
}

// A tick step of 1, 2 or 5 times a power of ten giving at most ~12 ticks.
double tick_step(double span) {
  double step = 1;
  while (span / step > 12) {
    double base = step;
    for (double f : {2.0, 5.0, 10.0})
      if (span / (base * f) <= 12 || f == 10.0) {
        step = base * f;
        break;
      }
  }
  return step;
}

}  // namespace

std::vector<TimelineBox> timeline_boxes(const SimResult& r) {
  std::vector<TimelineBox> boxes;
  for (size_t st = 0; st < r.timeline.size(); ++st)
    for (const Span& sp : r.timeline[st])
      if (is_compute(sp.instr.op))
        boxes.push_back({static_cast<int>(st), static_cast<double>(sp.start),
                         static_cast<double>(sp.end), sp.instr.op == Op::kBackwardPass,
                         sp.instr.micro_batch, sp.instr.chunk});
  return boxes;
}

std::string timeline_svg(const std::vector<TimelineBox>& boxes, int rows,
                         const TimelineStyle& style) {
  MS_CHECK(rows >= 1, "timeline_svg: needs at least one row, got ", rows);
  double t_end = 0;
  for (const TimelineBox& b : boxes) {
    MS_CHECK(b.row >= 0 && b.row < rows && b.end >= b.start && b.start >= 0,
             "timeline_svg: box of micro-batch ", b.micro_batch, " on row ", b.row, " spans [",
             b.start, ", ", b.end, "] (rows: ", rows, ")");
    t_end = std::max(t_end, b.end);
  }
  if (t_end <= 0) t_end = 1;
  const double left = 70, right = 20, top = 58, row_h = 30, gap = 6;
  // Pixels per time unit: about 1100 px wide, but wide enough for the labels
  // of unit-cost forwards ("F12.1") unless that makes the picture huge.
  const double scale = std::clamp(1100.0 / t_end, std::min(32.0, 4000.0 / t_end), 48.0);
  const double W = left + t_end * scale + right;
  const double H = top + rows * (row_h + gap) + 40;
  auto x = [&](double t) { return left + t * scale; };

  std::ostringstream s;
  s << "<?xml version='1.0' encoding='UTF-8'?>\n"
    << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='11'>\n"
    << "<defs><pattern id='idle' width='6' height='6' patternUnits='userSpaceOnUse' "
       "patternTransform='rotate(45)'><rect width='6' height='6' fill='#eeeeee'/>"
       "<line x1='0' y1='0' x2='0' y2='6' stroke='#bbbbbb' stroke-width='2'/></pattern></defs>\n"
    << "<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << left << "' y='20' font-size='14'>" << escape_xml(style.title) << "</text>\n"
    << "<text x='" << left << "' y='40'>" << escape_xml(style.subtitle) << "</text>\n";
  // Each row's background is the idle pattern; the boxes cover the busy time.
  for (int r = 0; r < rows; ++r) {
    double y = top + r * (row_h + gap);
    s << "<text x='" << left - 8 << "' y='" << y + row_h / 2 + 4 << "' text-anchor='end'>stage "
      << r << "</text>\n<rect class='idle' x='" << left << "' y='" << y << "' width='"
      << t_end * scale << "' height='" << row_h << "' fill='url(#idle)'/>\n";
  }
  for (const TimelineBox& b : boxes) {
    double y = top + b.row * (row_h + gap), w = (b.end - b.start) * scale;
    std::string label(b.backward ? "B" : "F");
    label += std::to_string(b.micro_batch);
    if (style.virtual_stages > 1) {
      label += '.';
      label += std::to_string(b.chunk);
    }
    s << "<g class='" << (b.backward ? "backward" : "forward") << "'><rect x='" << x(b.start)
      << "' y='" << y << "' width='" << w << "' height='" << row_h << "' fill='"
      << colour(b.micro_batch, style.micro_batches, b.backward)
      << "' stroke='#333333' stroke-width='0.5'><title>" << label << " [" << b.start << ", "
      << b.end << "]</title></rect>";
    // A label only where it fits (about 6.5 px per character at 11 px).
    if (w >= 6.5 * static_cast<double>(label.size()) + 2)
      s << "<text x='" << x(b.start) + w / 2 << "' y='" << y + row_h / 2 + 4
        << "' text-anchor='middle' fill='" << (b.backward ? "white" : "black") << "'>" << label
        << "</text>";
    s << "</g>\n";
  }
  // The time axis.
  double axis_y = top + rows * (row_h + gap) + 4, step = tick_step(t_end);
  s << "<line x1='" << left << "' y1='" << axis_y << "' x2='" << x(t_end) << "' y2='" << axis_y
    << "' stroke='#333333'/>\n";
  for (double t = 0; t <= t_end + 1e-9; t += step)
    s << "<line x1='" << x(t) << "' y1='" << axis_y << "' x2='" << x(t) << "' y2='" << axis_y + 4
      << "' stroke='#333333'/><text x='" << x(t) << "' y='" << axis_y + 16
      << "' text-anchor='middle'>" << t << "</text>\n";
  s << "<text x='" << x(t_end) << "' y='" << axis_y + 30 << "' text-anchor='end'>time ("
    << escape_xml(style.time_unit) << "); hatched: idle</text>\n</svg>\n";
  return s.str();
}

}  // namespace ms::pp
