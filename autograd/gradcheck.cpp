#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/grad_mode.h"
#include "nn/functional/elementwise.h"
#include "nn/functional/reduction.h"
#include "tensor/generator.h"

namespace lumen::autograd {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, GradcheckOptions opts) {
  for (const Tensor& t : inputs)
    LUMEN_CHECK(!t.defined() || t.device().is_cpu(), "gradcheck: inputs must be on the cpu");
  GradcheckResult res;
  Generator gen(opts.seed);
  Tensor out0 = fn(inputs);
  LUMEN_CHECK(out0.dtype() == DType::f64, "gradcheck: the function must return f64, got ",
              out0.dtype());
  Tensor r = randn(out0.shape(), {.dtype = DType::f64}, &gen);
  auto scalar = [&](const Tensor& out) { return (out * r).sum(); };

  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) t.set_grad({});
  Tensor loss = scalar(out0);
  if (!loss.requires_grad()) {
    res.ok = false;
    res.message = "output does not require grad";
    return res;
  }
  loss.backward();

  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    LUMEN_CHECK(x.dtype() == DType::f64, "gradcheck: input ", k, " must be f64");
    Tensor analytic = x.grad().defined() ? x.grad().contiguous() : zeros(x.shape(), {DType::f64});
    std::vector<double> a = analytic.to_vector<double>();
    // Walk the elements of x through its strides and perturb them in place.
    int64_t n = x.numel();
    Shape idx(x.dim(), 0);
    for (int64_t i = 0; i < n; ++i) {
      int64_t off = 0;
      for (int64_t d = 0; d < x.dim(); ++d) off += idx[d] * x.stride(d);
      double* p = x.data<double>() + off;
      double orig = *p;
      double fp, fm;
      {
        NoGradGuard ng;
        *p = orig + opts.eps;
        fp = scalar(fn(inputs)).item();
        *p = orig - opts.eps;
        fm = scalar(fn(inputs)).item();
        *p = orig;
      }
      double numeric = (fp - fm) / (2 * opts.eps);
      double err = std::abs(numeric - a[i]);
      res.max_abs_error = std::max(res.max_abs_error, err);
      if (!(err <= opts.atol + opts.rtol * std::abs(numeric)) && res.ok) {
        res.ok = false;
        std::ostringstream os;
        os << "input " << k << " element " << i << ": analytic " << a[i] << " vs numeric "
           << numeric;
        res.message = os.str();
      }
      for (int64_t d = x.dim() - 1; d >= 0; --d) {
        if (++idx[d] < x.size(d)) break;
        idx[d] = 0;
      }
    }
  }
  return res;
}

}  // namespace lumen::autograd
