#include "trainer/gradient_buckets.h"

#include "autograd/grad_mode.h"

namespace lumen {

using Clock = std::chrono::steady_clock;

struct GradientBuckets::Bucket {
  DType dtype = DType::f32;
  std::vector<size_t> params;
  std::vector<int64_t> offsets;  // of each parameter's gradient in `flat`
  int64_t numel = 0;             // gradient elements; the used flags follow them
  Tensor flat;
  size_t pending = 0;  // parameters whose gradient has not arrived in this backward
  bool launched = false;
  bool all_local = true;  // this rank had every gradient of the bucket (so every one is used)
  std::shared_ptr<dist::Work> work;
};

GradientBuckets::GradientBuckets(std::vector<Tensor> params,
                                 std::shared_ptr<dist::Communicator> comm, int64_t bucket_cap_bytes)
    : params_(std::move(params)), comm_(std::move(comm)) {
  LUMEN_CHECK(comm_ != nullptr, "GradientBuckets: the communicator is null");
  LUMEN_CHECK(bucket_cap_bytes > 0, "GradientBuckets: bucket_cap_bytes must be > 0, got ",
              bucket_cap_bytes);
  bucket_of_.resize(params_.size());
  // Reverse order; a new bucket when the cap is reached or the dtype changes.
  for (size_t k = params_.size(); k-- > 0;) {
    const Tensor& p = params_[k];
    LUMEN_CHECK(p.requires_grad() && p.is_leaf(), "DDP: parameter ", k,
                " must be a leaf that requires grad");
    LUMEN_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "DDP: parameter ", k,
                " has dtype ", p.dtype(), "; gradients are averaged in f32 or f64");
    bool fresh = buckets_.empty() || buckets_.back()->dtype != p.dtype() ||
                 (buckets_.back()->numel + p.numel()) * static_cast<int64_t>(p.element_size()) >
                     bucket_cap_bytes;
    if (fresh) {
      buckets_.push_back(std::make_unique<Bucket>());
      buckets_.back()->dtype = p.dtype();
    }
    Bucket& b = *buckets_.back();
    b.params.push_back(k);
    b.offsets.push_back(b.numel);
    b.numel += p.numel();
    bucket_of_[k] = buckets_.size() - 1;
  }
  for (auto& b : buckets_) {
    // On the parameters' device, so the communicator reduces it where the gradients are.
    b->flat = empty({b->numel + static_cast<int64_t>(b->params.size())},
                    {b->dtype, params_[b->params.front()].device()});
    bucket_params_.push_back(b->params);
  }
  stats_.buckets = static_cast<int64_t>(buckets_.size());
  for (size_t k = 0; k < params_.size(); ++k)
    hook_handles_.push_back(params_[k].register_post_accumulate_grad_hook(
        [this, k](const Tensor&) { on_gradient(k); }));
}

GradientBuckets::~GradientBuckets() {
  for (size_t k = 0; k < params_.size(); ++k)
    params_[k].remove_post_accumulate_grad_hook(hook_handles_[k]);
  drain();
}

// A backward that failed midway leaves all-reduces running (on NCCL's stream): they end before
// their buckets are packed again or go back to the allocator.
void GradientBuckets::drain() noexcept {
  for (auto& b : buckets_) {
    if (!b->work) continue;
    try {
      b->work->wait();
    } catch (...) {  // the communicator failed; the error was (or will be) reported elsewhere
    }
    b->work.reset();
  }
}

void GradientBuckets::prepare(bool sync, bool overlap) {
  drain();
  syncing_ = sync;
  overlap_ = overlap;
  next_launch_ = 0;
  arrived_.assign(params_.size(), false);
  for (auto& b : buckets_) {
    b->pending = b->params.size();
    b->launched = false;
    b->all_local = true;
  }
}

void GradientBuckets::on_gradient(size_t param) {
  if (!syncing_) return;
  Bucket& b = *buckets_[bucket_of_[param]];
  if (arrived_[param]) {
    LUMEN_CHECK(!b.launched, "DDP: parameter ", param, " of shape ",
                ShapeStr{params_[param].shape()},
                " got a second gradient in one backward after its bucket's all-reduce had "
                "started, which then misses it (a parameter used in several checkpointed calls, "
                "or inside and outside one, or a second backward before the step); keep shared "
                "parameters out of checkpointed functions, or give them a bucket of their own "
                "that fills last");
    return;  // the bucket has not started: it packs the accumulated gradient
  }
  arrived_[param] = true;
  if (b.launched || b.pending == 0) return;
  if (--b.pending == 0 && overlap_) launch_ready();
}

// Buckets start strictly in index order, so every rank issues the same sequence.
void GradientBuckets::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_]->pending == 0)
    launch(*buckets_[next_launch_++]);
}

void GradientBuckets::launch(Bucket& b) {
  NoGradGuard no_grad;
  Clock::time_point start = Clock::now();
  for (size_t j = 0; j < b.params.size(); ++j) {
    const Tensor& p = params_[b.params[j]];
    Tensor g = p.grad();
    Tensor slot = b.flat.narrow(0, b.offsets[j], p.numel());
    if (g.defined())
      slot.copy_(g.reshape({p.numel()}));
    else
      slot.zero_();
    b.all_local = b.all_local && g.defined();
    b.flat.narrow(0, b.numel + static_cast<int64_t>(j), 1).fill_(g.defined() ? 1.0 : 0.0);
  }
  b.launched = true;
  stats_.copy_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  b.work = comm_->all_reduce_async(b.flat, dist::ReduceOp::avg);
}

bool GradientBuckets::finish() {
  LUMEN_CHECK(syncing_, "GradientBuckets::finish: prepare(true) was not called for this backward");
  syncing_ = false;
  // Parameters this rank did not use: their buckets start now, in order.
  Clock::time_point wait_start = Clock::now();
  for (auto& b : buckets_) b->pending = 0;
  launch_ready();
  for (auto& b : buckets_) b->work->wait();
  ++stats_.steps;
  stats_.exposed_seconds += std::chrono::duration<double>(Clock::now() - wait_start).count();

  NoGradGuard no_grad;
  bool any_used = false;
  for (auto& b : buckets_) {
    // A gradient this rank had is used (its averaged flag is at least 1 / world size); only a
    // bucket with gradients this rank lacked reads the flags back (a wait on a GPU).
    const auto n = static_cast<int64_t>(b->params.size());
    std::vector<double> used = b->all_local ? std::vector<double>(n, 1.0)
                                            : b->flat.narrow(0, b->numel, n).to_vector<double>();
    for (size_t j = 0; j < b->params.size(); ++j) {
      if (used[j] == 0) continue;  // no rank has a gradient for it
      any_used = true;
      const Tensor& p = params_[b->params[j]];
      // The gradient becomes a view into the bucket (PyTorch's gradient_as_bucket_view): no
      // copy. The next backward replaces it with a fresh tensor before the bucket is packed
      // again, so the view is never overwritten while it is the gradient.
      p.set_grad(b->flat.narrow(0, b->offsets[j], p.numel()).view(p.shape()));
    }
  }
  return any_used;
}

}  // namespace lumen
