// Training outputs a person reads: the loss curve as CSV and as an SVG chart.
#pragma once
#include <string>
#include <vector>

namespace ms {

struct LossPoint {
  int64_t step;
  double train_loss;
  double val_loss;  // NaN when not evaluated at this step
  double lr;
};

void write_loss_csv(const std::string& path, const std::vector<LossPoint>& points);
// A self-contained SVG line chart: train loss (blue) and validation loss (orange dots).
void write_loss_svg(const std::string& path, const std::vector<LossPoint>& points,
                    const std::string& title);

}  // namespace ms
