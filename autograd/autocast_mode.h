#pragma once
// Autocast, as torch.autocast: inside an AutocastGuard, the ops that gain from 16-bit tensor
// cores (matmul, linear, conv2d, scaled_dot_product_attention) cast their f32 inputs to the
// autocast dtype (f16 or bf16) and run there, accumulating in f32; the ops that lose accuracy in 16
// bits (softmax, log_softmax, the losses, layer and batch norm, sum and mean) cast 16-bit inputs up
// to f32; every other op runs in its inputs' dtype (a binary op of f16 and f32 promotes to f32).
// The casts are differentiable, so f32 parameters stay f32 and receive f32 gradients: they are the
// master copies, and the optimizer never sees a 16-bit tensor. Backward runs with autocast off:
// each op's backward computes in the dtypes its forward chose.
#include "tensor/tensor.h"

namespace lumen {

struct AutocastMode {
  static bool is_enabled();
  static DType dtype();  // f16 or bf16; meaningful while enabled
};

// Turns autocast on (or off, with enabled = false) for its scope on this thread, restoring
// the previous state when it ends, so guards nest.
class AutocastGuard {
 public:
  explicit AutocastGuard(DType dtype, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool prev_enabled_;
  DType prev_dtype_;
};

namespace autocast {
// The input of a low-precision op: an f32 tensor becomes the autocast dtype while autocast is
// on; anything else (f64, integers, already 16-bit, autocast off) is returned as it is.
//
// A parameter (an f32 leaf that requires grad) is cast once and its 16-bit copy kept, tied to
// the parameter's storage version (Storage::version): later casts of the unchanged parameter,
// in this forward or the next, reuse it; any in-place write through Lumen's API makes it stale
// and the next cast makes a new one. The fused optimizer steps write the copy together with the
// parameter (kernels/optim.h), so a training loop casts each weight once, ever, instead of once
// per step. The gradient flows to the f32 parameter as through Tensor::to.
Tensor to_lower_precision(const Tensor& t);

// The kept 16-bit copy of `param` if it is current (made from the parameter's present values),
// else an undefined tensor: what an optimizer step passes its kernel to update in place.
Tensor current_weight_copy(const Tensor& param);
// After a step wrote `param` (bumping its version) and its copy together: the copy is current.
void weight_copy_updated(const Tensor& param);
// Drops every kept copy (frees their memory).
void clear_weight_copies();
// The input of an f32 op: an f16 or bf16 tensor becomes f32 while autocast is on.
Tensor to_f32(const Tensor& t);
// Whether an f32 op whose kernels read 16 bits themselves (cross_entropy, layer_norm) takes `t`
// as it is and computes and writes f32, where another f32 op would call to_f32: autocast is on
// and t is f16 or bf16.
bool reads_as_f32(const Tensor& t);
}  // namespace autocast

}  // namespace lumen
