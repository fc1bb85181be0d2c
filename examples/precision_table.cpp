// precision_table: what each precision preset stores and computes in, what it costs per parameter,
// and how much a round trip through its formats loses on N(0, 1) data, measured on the device.
//
//   precision_table [--device cpu|cuda|cuda:N] [--precision NAME]... [--n ELEMENTS]
#include <mixtape/mixtape.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace mt = mixtape;
using Presets = mt::PresetRegistry<mt::precision::lightning_presets>;

namespace {

struct Args {
  mt::Device device = mt::default_device();
  std::vector<std::string> precisions;
  std::int64_t n = 1 << 22;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      MIXTAPE_EXPECT(i + 1 < argc, mt::ValueError, flag, ": expected a value");
      return argv[++i];
    };
    if (flag == "--device") {
      a.device = mt::parse_device(value());
    } else if (flag == "--precision") {
      a.precisions.push_back(std::string(Presets::info(value()).name));  // throws, listing valid names
    } else if (flag == "--n") {
      a.n = std::stoll(value());
      MIXTAPE_EXPECT(a.n > 0, mt::ValueError, "--n: expected a positive element count, got ", a.n);
    } else if (flag == "--help" || flag == "-h") {
      std::printf("usage: precision_table [--device cpu|cuda|cuda:N] [--precision NAME]... [--n ELEMENTS]\n"
                  "precisions: %s\n", Presets::valid_names().c_str());
      std::exit(0);
    } else {
      MIXTAPE_THROW(mt::ValueError, "unknown flag '", flag, "'; expected --device, --precision, --n or --help");
    }
  }
  return a;
}

/// Relative RMS error of x -> T -> f32 on the device: sqrt(sum (x_T - x)^2 / sum x^2).
template <class T>
double round_trip_error(const mt::ExecutionContext& ctx, const mt::Tensor<float>& x, double sum_x2) {
  if constexpr (!mt::ScalarElement<T> || !mt::ScalarFormat<T>) {
    return std::nan("");  // not an element format (none, packed or FP8-recipe tags)
  } else {
    auto narrow = mt::Tensor<T>::empty(ctx, x.shape());
    auto back = mt::Tensor<float>::empty(ctx, x.shape());
    auto sq = mt::Tensor<float>::empty(ctx, x.shape());
    auto total = mt::Tensor<double>::empty(ctx, {1});
    mt::kernels::convert(ctx, x, narrow);
    mt::kernels::convert(ctx, narrow, back);
    mt::kernels::map(ctx, mt::kernels::Sub{}, sq, back, x);  // exact: back is within a factor 2 of x
    mt::kernels::map(ctx, mt::kernels::Square{}, sq, sq);
    mt::kernels::sum(ctx, sq, total);
    return std::sqrt(mt::kernels::item(ctx, total) / sum_x2);
  }
}

struct Row {
  const mt::ExecutionContext& ctx;
  const mt::Tensor<float>& x;
  double sum_x2;
  const Args& args;

  template <class P>
  void operator()() const {
    if (!args.precisions.empty() &&
        std::find(args.precisions.begin(), args.precisions.end(), std::string(P::name)) == args.precisions.end())
      return;
    using T = mt::policy_traits<P>;
    using M = mt::memory_model<P>;
    std::printf("\n%s  (%s)\n", std::string(P::name).c_str(), std::string(P::description).c_str());
    for (const auto& [role, format] : mt::role_table<P>()) {
      std::printf("  %-18s %s\n", std::string(role).c_str(), format.c_str());
    }
    std::printf("  bytes/param        weight %.4g, compute copy %.4g, master %.4g, gradient %.4g, AdamW state %.4g"
                " -> AdamW %.4g, SGD+momentum %.4g\n",
                M::weight, M::compute_copy, M::master, M::gradient, M::adamw_state, M::adamw_total, M::sgd_total);
    std::printf("  round trip (rel. RMS error on %lld N(0,1) values, %s): parameter %.3e, GEMM compute %.3e\n",
                static_cast<long long>(x.numel()), ctx.device().to_string().c_str(),
                round_trip_error<typename T::param_type>(ctx, x, sum_x2),
                round_trip_error<typename T::gemm_compute_type>(ctx, x, sum_x2));
  }
};

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  mt::ContextOptions options;
  options.seed = 20261122;
  auto ctx = mt::ExecutionContext::on(args.device, options);
  auto x = mt::Tensor<float>::empty(ctx, {args.n});
  mt::kernels::normal(ctx, x);
  auto x2 = mt::Tensor<float>::empty(ctx, x.shape());
  auto total = mt::Tensor<double>::empty(ctx, {1});
  mt::kernels::map(ctx, mt::kernels::Square{}, x2, x);
  mt::kernels::sum(ctx, x2, total);
  const double sum_x2 = mt::kernels::item(ctx, total);
  std::printf("mixtape %d.%d.%d, backend %s, device %s\n", MIXTAPE_VERSION_MAJOR, MIXTAPE_VERSION_MINOR,
              MIXTAPE_VERSION_PATCH, mt::backend_set_name(), ctx.device().to_string().c_str());
  Presets::for_each(Row{ctx, x, sum_x2, args});
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "precision_table: %s\n", e.what());
  return 1;
}
