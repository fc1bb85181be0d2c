/// @file gradcheck.hpp
/// @brief Gradient checking by central differences in f64 (Stan's `expect_ad`, dlib's
///        `test_layer`): the analytic gradient of every input element against
///        (f(x + h) - f(x - h)) / 2h.
///
/// @code
///   auto report = autograd::check_gradients(ctx, inputs, [](autograd::Tape& t, auto& xs) {
///     return autograd::sum(t, autograd::mul(t, xs[0], xs[1]));
///   });
///   REQUIRE(report.passed());
/// @endcode
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "mixtape/autograd/ops_basic.hpp"

namespace mixtape::autograd {

/// The worst element of a gradient check.
struct GradCheckReport {
  double max_error = 0;       ///< max over elements of |analytic - numeric| / (atol + rtol * |numeric|)
  std::size_t input = 0;      ///< where it was
  std::int64_t element = 0;
  double analytic = 0, numeric = 0;
  std::int64_t checked = 0;   ///< elements compared
  bool passed() const noexcept { return max_error <= 1.0; }
  std::string describe() const {
    return "worst at input " + std::to_string(input) + " element " + std::to_string(element) + ": analytic " +
           std::to_string(analytic) + ", numeric " + std::to_string(numeric) + " (" + std::to_string(checked) +
           " elements checked, error ratio " + std::to_string(max_error) + ")";
  }
};

/// Options of check_gradients.
struct GradCheckOptions {
  /// Step, relative to max(1, |x|). Central differences err by h^2 |f'''| / 6 (truncation) plus about
  /// eps |f| / h (cancellation): h = 1e-5 balances them near 1e-10 for smooth O(1) functions in f64.
  double h = 1e-5;
  double atol = 1e-8;  ///< ~250x the combined error above: room for O(10) curvature, far below a wrong gradient
  double rtol = 1e-7;
};

/// Checks `loss(tape, vars)` (a one-element f64 Var) against central differences over every element
/// of every input. Inputs are host f64 tensors; they are perturbed in place and restored.
/// @tparam F  callable (Tape&, std::vector<Var<double>>&) -> Var<double>
template <class F>
GradCheckReport check_gradients(const ExecutionContext& ctx, std::vector<Tensor<double>> inputs, F&& loss,
                                GradCheckOptions options = {}) {
  for (const auto& x : inputs) {
    MIXTAPE_EXPECT(x.device().is_cpu() && x.is_contiguous(), ValueError,
                   "check_gradients: expected contiguous host f64 inputs, got one on ", x.device());
  }
  auto evaluate = [&](Tape& tape, bool grads) {
    std::vector<Var<double>> vars;
    for (const auto& x : inputs) vars.push_back(grads ? leaf(tape, x) : constant(x));
    Var<double> l = loss(tape, vars);
    MIXTAPE_EXPECT(l.value().numel() == 1, ShapeError, "check_gradients: the loss must have one element, got ",
                   l.shape());
    return std::pair{vars, l};
  };
  // Analytic gradients.
  Tape tape(ctx);
  auto [vars, l] = evaluate(tape, true);
  backward(tape, l);
  std::vector<std::vector<double>> analytic;
  for (const auto& v : vars) {
    const TensorRef g = tape.slot_grad(v.slot());
    analytic.push_back(g.defined() ? to_vector(ctx, g.as<double>()) : std::vector<double>(v.value().numel(), 0.0));
  }
  // Numeric gradients, one element at a time.
  GradCheckReport report;
  Tape probe(ctx);
  auto value_at = [&] {
    probe.clear();
    NoGradGuard no_grad(probe);
    auto [unused, y] = evaluate(probe, false);
    return to_vector(ctx, y.value())[0];
  };
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    double* x = inputs[i].data();
    for (std::int64_t e = 0; e < inputs[i].numel(); ++e) {
      const double saved = x[e];
      const double step = options.h * std::max(1.0, std::abs(saved));
      x[e] = saved + step;
      const double plus = value_at();
      x[e] = saved - step;
      const double minus = value_at();
      x[e] = saved;
      const double numeric = (plus - minus) / (2 * step);
      const double a = analytic[i][static_cast<std::size_t>(e)];
      const double err = std::abs(a - numeric) / (options.atol + options.rtol * std::abs(numeric));
      ++report.checked;
      if (!(err <= report.max_error)) {  // NaN counts as the worst
        report.max_error = std::isnan(err) ? INFINITY : err;
        report.input = i;
        report.element = e;
        report.analytic = a;
        report.numeric = numeric;
      }
    }
  }
  return report;
}

}  // namespace mixtape::autograd
