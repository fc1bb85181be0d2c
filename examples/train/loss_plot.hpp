/// @file loss_plot.hpp
/// @brief An SVG of training-loss curves, one line per run, with axes, ticks, labels, a legend and
///        the entropy rate as a dashed line: what precision_sweep writes, readable in a browser.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <mixtape/core/error.hpp>

#include "train_options.hpp"

namespace train {

namespace detail {

/// "Nice" tick spacing (1, 2 or 5 times a power of ten) giving about `target` ticks over `span`.
inline double tick_step(double span, int target) {
  const double raw = span / std::max(target, 1);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

/// Mean over a centred window of `w` points (the per-step loss of fresh batches is noisy).
inline std::vector<CurvePoint> smooth(const std::vector<CurvePoint>& c, int w) {
  std::vector<CurvePoint> out;
  for (std::size_t i = 0; i < c.size(); ++i) {
    const std::size_t lo = i >= static_cast<std::size_t>(w / 2) ? i - w / 2 : 0;
    const std::size_t hi = std::min(c.size(), i + w / 2 + 1);
    double s = 0;
    for (std::size_t j = lo; j < hi; ++j) s += c[j].loss;
    out.push_back({c[i].step, s / static_cast<double>(hi - lo)});
  }
  return out;
}

}  // namespace detail

/// Writes `path` (to a temporary file first, then renamed). `entropy_rate` < 0: no reference line.
/// @throws mixtape::ValueError when the file cannot be written
inline void write_loss_svg(const std::string& path, const std::vector<RunResult>& runs, double entropy_rate) {
  constexpr double kW = 900, kH = 540, kL = 80, kR = 200, kT = 40, kB = 60;  // size and margins
  constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                                     "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
  std::vector<std::vector<CurvePoint>> curves;
  double x_max = 1, y_min = 1e300, y_max = -1e300;
  for (const auto& r : runs) {
    curves.push_back(detail::smooth(r.train_curve, 9));
    for (const auto& p : curves.back()) {
      x_max = std::max(x_max, static_cast<double>(p.step));
      if (std::isfinite(p.loss)) y_min = std::min(y_min, p.loss), y_max = std::max(y_max, p.loss);
    }
  }
  if (entropy_rate >= 0) y_min = std::min(y_min, entropy_rate);
  if (!(y_max > y_min)) y_min = 0, y_max = 1;
  const double pad = 0.05 * (y_max - y_min);
  y_min -= pad, y_max += pad;
  auto px = [&](double x) { return kL + (kW - kL - kR) * x / x_max; };
  auto py = [&](double y) { return kT + (kH - kT - kB) * (y_max - y) / (y_max - y_min); };

  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    MIXTAPE_EXPECT(f.good(), mixtape::ValueError, "cannot write the plot '", tmp, "'");
    f << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\"" << kH
      << "\" font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    f << "<text x=\"" << (kL + kW - kR) / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">"
      << "Training loss by precision (smoothed over 9 steps)</text>\n";
    // Axes, ticks and grid.
    f << "<g stroke=\"black\"><line x1=\"" << kL << "\" y1=\"" << kH - kB << "\" x2=\"" << kW - kR << "\" y2=\""
      << kH - kB << "\"/><line x1=\"" << kL << "\" y1=\"" << kT << "\" x2=\"" << kL << "\" y2=\"" << kH - kB
      << "\"/></g>\n";
    const double xs = detail::tick_step(x_max, 8), ys = detail::tick_step(y_max - y_min, 8);
    for (double x = 0; x <= x_max + 1e-9; x += xs)
      f << "<line x1=\"" << px(x) << "\" y1=\"" << kH - kB << "\" x2=\"" << px(x) << "\" y2=\"" << kH - kB + 5
        << "\" stroke=\"black\"/><text x=\"" << px(x) << "\" y=\"" << kH - kB + 20 << "\" text-anchor=\"middle\">" << x
        << "</text>\n";
    for (double y = std::ceil(y_min / ys) * ys; y <= y_max; y += ys) {
      char label[32];
      std::snprintf(label, sizeof label, "%.3g", y);
      f << "<line x1=\"" << kL << "\" y1=\"" << py(y) << "\" x2=\"" << kW - kR << "\" y2=\"" << py(y)
        << "\" stroke=\"#e0e0e0\"/><text x=\"" << kL - 8 << "\" y=\"" << py(y) + 4 << "\" text-anchor=\"end\">"
        << label << "</text>\n";
    }
    f << "<text x=\"" << (kL + kW - kR) / 2 << "\" y=\"" << kH - 15 << "\" text-anchor=\"middle\">step</text>\n";
    f << "<text transform=\"translate(22," << (kT + kH - kB) / 2
      << ") rotate(-90)\" text-anchor=\"middle\">cross-entropy (nats/token)</text>\n";
    if (entropy_rate >= 0) {
      f << "<line x1=\"" << kL << "\" y1=\"" << py(entropy_rate) << "\" x2=\"" << kW - kR << "\" y2=\""
        << py(entropy_rate) << "\" stroke=\"black\" stroke-dasharray=\"6,4\"/>\n";
    }
    // Curves and legend.
    for (std::size_t i = 0; i < curves.size(); ++i) {
      const char* color = kColors[i % (sizeof kColors / sizeof *kColors)];
      f << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\" points=\"";
      for (const auto& p : curves[i])
        if (std::isfinite(p.loss)) f << px(static_cast<double>(p.step)) << ',' << py(p.loss) << ' ';
      f << "\"/>\n";
      const double ly = kT + 20 + 22 * static_cast<double>(i);
      f << "<line x1=\"" << kW - kR + 15 << "\" y1=\"" << ly - 4 << "\" x2=\"" << kW - kR + 40 << "\" y2=\"" << ly - 4
        << "\" stroke=\"" << color << "\" stroke-width=\"3\"/><text x=\"" << kW - kR + 46 << "\" y=\"" << ly << "\">"
        << runs[i].precision << "</text>\n";
    }
    if (entropy_rate >= 0) {
      const double ly = kT + 20 + 22 * static_cast<double>(curves.size());
      f << "<line x1=\"" << kW - kR + 15 << "\" y1=\"" << ly - 4 << "\" x2=\"" << kW - kR + 40 << "\" y2=\"" << ly - 4
        << "\" stroke=\"black\" stroke-dasharray=\"6,4\"/><text x=\"" << kW - kR + 46 << "\" y=\"" << ly
        << "\">entropy rate</text>\n";
    }
    f << "</svg>\n";
    MIXTAPE_EXPECT(f.good(), mixtape::ValueError, "writing the plot '", tmp, "' failed");
  }
  MIXTAPE_EXPECT(std::rename(tmp.c_str(), path.c_str()) == 0, mixtape::ValueError, "cannot rename '", tmp, "' to '",
                 path, "'");
}

}  // namespace train
