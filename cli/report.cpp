#include "cli/report.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "nn/atomic_save.h"
#include "tensor/error.h"

namespace ms {

namespace {
// All or nothing (nn/atomic_save.h: a temporary file, fsynced, renamed over
// the target): a full disk once left a 0-byte .loss.svg behind an error.
void write_file(const std::string& path, const std::string& text, const char* what) {
  try {
    AtomicFile out(path, "");
    out.write(text.data(), text.size());
    out.commit();
  } catch (const Error& e) {
    throw Error(str_cat("writing the ", what, " to '", path, "' failed: ", e.what()));
  }
}
}  // namespace

void write_loss_csv(const std::string& path, const std::vector<LossPoint>& points) {
  std::ostringstream out;
  out << "step,train_loss,val_loss,lr\n";
  for (const LossPoint& p : points) {
    out << p.step << "," << p.train_loss << ",";
    if (!std::isnan(p.val_loss)) out << p.val_loss;
    out << "," << p.lr << "\n";
  }
  write_file(path, out.str(), "loss curve");
}

void write_loss_svg(const std::string& path, const std::vector<LossPoint>& points,
                    const std::string& title) {
  const double W = 720, H = 400, left = 60, right = 20, top = 40, bottom = 50;
  double max_step = 1, lo = INFINITY, hi = -INFINITY;
  for (const LossPoint& p : points) {
    max_step = std::max(max_step, static_cast<double>(p.step));
    for (double v : {p.train_loss, p.val_loss}) {
      if (std::isnan(v)) continue;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  if (!(hi > lo)) lo = 0, hi = std::isfinite(hi) ? hi + 1 : 1;
  lo = std::floor(lo * 2) / 2;
  hi = std::ceil(hi * 2) / 2;
  auto x = [&](double s) { return left + (W - left - right) * s / max_step; };
  auto y = [&](double v) { return top + (H - top - bottom) * (hi - v) / (hi - lo); };
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' "
         "fill='white'/>\n"
      << "<text x='" << W / 2 << "' y='22' text-anchor='middle' font-size='14'>" << title
      << "</text>\n";
  for (int i = 0; i <= 4; ++i) {  // horizontal grid with loss labels
    double v = lo + (hi - lo) * i / 4;
    svg << "<line x1='" << left << "' x2='" << W - right << "' y1='" << y(v) << "' y2='" << y(v)
        << "' stroke='#ddd'/><text x='" << left - 6 << "' y='" << y(v) + 4 << "' text-anchor='end'>"
        << std::round(v * 100) / 100 << "</text>\n";
  }
  svg << "<text x='" << W / 2 << "' y='" << H - 12 << "' text-anchor='middle'>step (of " << max_step
      << ")</text>\n<text x='16' y='" << H / 2 << "' transform='rotate(-90 16 " << H / 2
      << ")' text-anchor='middle'>loss (nats/byte)</text>\n";
  svg << "<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='";
  for (const LossPoint& p : points)
    svg << x(static_cast<double>(p.step)) << "," << y(p.train_loss) << " ";
  svg << "'/>\n";
  for (const LossPoint& p : points)
    if (!std::isnan(p.val_loss))
      svg << "<circle cx='" << x(static_cast<double>(p.step)) << "' cy='" << y(p.val_loss)
          << "' r='3.5' fill='#ff7f0e'/>\n";
  svg << "<text x='" << W - right - 150 << "' y='" << top + 14
      << "' fill='#1f77b4'>— train</text><text x='" << W - right - 80 << "' y='" << top + 14
      << "' fill='#ff7f0e'>● validation</text>\n</svg>\n";
  write_file(path, svg.str(), "loss chart");
}

}  // namespace ms
