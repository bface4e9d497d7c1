#include "trainer/data_loader.h"

#include <omp.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "autograd/grad_mode.h"
#include "nn/functional/index.h"
#include "tensor/error.h"
#include "tensor/generator.h"
#include "trainer/random_permutation.h"

namespace lumen {

Batch default_collate(const std::vector<Batch>& examples) {
  LUMEN_CHECK(!examples.empty(), "default_collate: expected at least one example");
  const Batch& first = examples[0];
  LUMEN_CHECK(!first.empty(), "default_collate: example 0 has no fields");
  for (size_t e = 0; e < examples.size(); ++e) {
    LUMEN_CHECK(examples[e].size() == first.size(), "default_collate: example ", e, " has ",
                examples[e].size(), " fields but example 0 has ", first.size());
    for (size_t f = 0; f < first.size(); ++f) {
      LUMEN_CHECK(examples[e][f].defined(), "default_collate: field ", f, " of example ", e,
                  " is an undefined tensor");
      LUMEN_CHECK(examples[e][f].shape() == first[f].shape(), "default_collate: field ", f,
                  " of example ", e, " has shape ", ShapeStr{examples[e][f].shape()},
                  " but example 0 has shape ", ShapeStr{first[f].shape()},
                  "; stacking needs equal shapes (pad the examples, or pass a custom collate)");
    }
  }
  Batch batch(first.size());
  std::vector<Tensor> field(examples.size());
  for (size_t f = 0; f < first.size(); ++f) {
    for (size_t e = 0; e < examples.size(); ++e) field[e] = examples[e][f];
    batch[f] = stack(field, 0);
  }
  return batch;
}

// Batch k of an epoch: the examples at positions [k * batch_size, ...) of `order` (the
// identity over the dataset when `order` is null). With default_collate, a dataset that gathers
// batches itself (Dataset::get_batch) makes it in one go; otherwise collate stacks get()'s
// examples. Then pinned when asked.
Batch DataLoader::load_batch(const Dataset& dataset, const std::vector<int64_t>* order, int64_t k,
                             int64_t batch_size, const Collation& collation) {
  int64_t n = order ? static_cast<int64_t>(order->size()) : dataset.size();
  int64_t begin = k * batch_size, end = std::min(begin + batch_size, n);
  std::vector<int64_t> indices;
  indices.reserve(static_cast<size_t>(end - begin));
  for (int64_t i = begin; i < end; ++i)
    indices.push_back(order ? (*order)[static_cast<size_t>(i)] : i);
  std::optional<Batch> batch;
  if (collation.by_default) batch = dataset.get_batch(indices);
  if (!batch) {
    std::vector<Batch> examples;
    examples.reserve(indices.size());
    for (int64_t i : indices) examples.push_back(dataset.get(i));
    batch = collation.collate(examples);
  }
  if (collation.pin)
    for (Tensor& t : *batch)  // fields may be undefined or already on a device
      if (t.defined() && t.device().is_cpu()) t = t.pin_memory();
  return std::move(*batch);
}

// Worker threads that load the batches [next_to_load, end) of the current epoch, at most
// `capacity` ahead of the consumer, and hand them over by batch index, so the consumer takes
// batch k as the k-th whatever order the threads finish in. Each begin_epoch starts a new
// generation: loads of an older one still running when it starts are dropped when they end.
struct DataLoader::Workers {
  struct Result {
    Batch batch;
    std::exception_ptr error;
  };

  std::shared_ptr<const Dataset> dataset;
  int64_t batch_size;
  Collation collation;
  int64_t capacity;

  std::mutex mu;
  std::condition_variable work_cv;   // workers: a batch may be loaded, or stop
  std::condition_variable ready_cv;  // consumer: a batch finished loading
  bool stop = false;
  uint64_t generation = 0;
  std::shared_ptr<const std::vector<int64_t>> order;
  int64_t next_to_load = 0, end = 0, next_to_deliver = 0;
  std::map<int64_t, Result> ready;
  std::vector<std::thread> threads;

  Workers(std::shared_ptr<const Dataset> ds, const DataLoaderOptions& opts, Collation c)
      : dataset(std::move(ds)),
        batch_size(opts.batch_size),
        collation(std::move(c)),
        capacity(static_cast<int64_t>(opts.prefetch_factor) * opts.num_workers) {
    for (int i = 0; i < opts.num_workers; ++i) threads.emplace_back([this] { run(); });
  }

  ~Workers() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    work_cv.notify_all();
    for (std::thread& t : threads) t.join();
  }

  void run() {
    // Grad mode is thread-local: no graph from collate's stacks. One OpenMP thread per
    // worker: the workers already load batches in parallel.
    NoGradGuard no_grad;
    omp_set_num_threads(1);
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      work_cv.wait(lock, [&] {
        return stop || (next_to_load < end && next_to_load - next_to_deliver < capacity);
      });
      if (stop) return;
      int64_t k = next_to_load++;
      uint64_t gen = generation;
      std::shared_ptr<const std::vector<int64_t>> ord = order;
      lock.unlock();
      Result r;
      try {
        r.batch = load_batch(*dataset, ord.get(), k, batch_size, collation);
      } catch (...) {
        r.error = std::current_exception();
      }
      lock.lock();
      if (gen == generation) {
        ready.emplace(k, std::move(r));
        ready_cv.notify_one();
      }
    }
  }

  // Abandons the current generation and loads batches [skip, num_batches) in `new_order`.
  void restart(std::shared_ptr<const std::vector<int64_t>> new_order, int64_t skip,
               int64_t num_batches) {
    std::map<int64_t, Result> dropped;
    {
      std::lock_guard<std::mutex> lock(mu);
      ++generation;
      dropped.swap(ready);
      order = std::move(new_order);
      next_to_load = next_to_deliver = skip;
      end = num_batches;
    }
    work_cv.notify_all();
  }

  Batch take(int64_t k) {
    std::unique_lock<std::mutex> lock(mu);
    LUMEN_CHECK(k == next_to_deliver, "DataLoader: internal error: batch ", k,
                " requested but the workers deliver batch ", next_to_deliver, " next");
    ready_cv.wait(lock, [&] { return ready.count(k) != 0; });
    auto node = ready.extract(k);
    ++next_to_deliver;
    lock.unlock();
    work_cv.notify_one();  // one slot freed
    if (node.mapped().error) std::rethrow_exception(node.mapped().error);
    return std::move(node.mapped().batch);
  }
};

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)) {
  LUMEN_CHECK(dataset_ != nullptr, "DataLoader: the dataset is null");
  LUMEN_CHECK(options_.batch_size >= 1, "DataLoader: batch_size must be >= 1, got ",
              options_.batch_size);
  LUMEN_CHECK(options_.num_workers >= 0, "DataLoader: num_workers must be >= 0, got ",
              options_.num_workers);
  LUMEN_CHECK(options_.prefetch_factor >= 1, "DataLoader: prefetch_factor must be >= 1, got ",
              options_.prefetch_factor);
  LUMEN_CHECK(static_cast<bool>(options_.collate), "DataLoader: collate is an empty function");
  seed_ = options_.seed.value_or(default_generator().seed());
  using CollateFn = Batch (*)(const std::vector<Batch>&);
  const CollateFn* fn = options_.collate.target<CollateFn>();
  collation_.collate = options_.collate;
  collation_.by_default = fn != nullptr && *fn == &default_collate;
  // Pinned by whoever loads (a worker thread when there are workers).
  collation_.pin = options_.pin_memory && cuda_is_available();
}

DataLoader::~DataLoader() = default;

int64_t DataLoader::num_examples() const {
  int64_t n = dataset_->size();
  return num_replicas_ == 1 ? n : (n + num_replicas_ - 1) / num_replicas_;
}

void DataLoader::distribute(int64_t rank, int64_t num_replicas, std::optional<uint64_t> seed) {
  LUMEN_CHECK(num_replicas >= 1 && rank >= 0 && rank < num_replicas,
              "DataLoader::distribute: ", "rank ", rank,
              " is not in [0, num_replicas = ", num_replicas, ")");
  rank_ = rank;
  num_replicas_ = num_replicas;
  if (seed) seed_ = *seed;
  active_ = false;
}

int64_t DataLoader::size() const {
  int64_t n = num_examples(), bs = options_.batch_size;
  return options_.drop_last ? n / bs : (n + bs - 1) / bs;
}

void DataLoader::begin_epoch(int64_t epoch, int64_t skip_batches) {
  // Each epoch owns 2^32 Philox blocks above kLoaderStream (see random_permutation.h).
  LUMEN_CHECK(epoch >= 0 && epoch < (int64_t{1} << 31), "DataLoader::begin_epoch: epoch ", epoch,
              " is out of range [0, 2^31)");
  int64_t num_batches = size();
  LUMEN_CHECK(skip_batches >= 0 && skip_batches <= num_batches,
              "DataLoader::begin_epoch: skip_batches ", skip_batches, " is out of range [0, ",
              num_batches, "] (the epoch has ", num_batches, " batches)");
  order_.reset();
  if (options_.shuffle || num_replicas_ > 1) {
    int64_t n = dataset_->size();
    std::vector<int64_t> order;
    if (options_.shuffle) {
      uint64_t counter = kLoaderStream + (static_cast<uint64_t>(epoch) << 32);
      order = philox_permutation(n, seed_, counter);
    } else {
      order.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
    }
    if (num_replicas_ > 1) {
      // Pad by repeating the order from its start, then take every num_replicas-th position.
      int64_t per_rank = num_examples();
      std::vector<int64_t> shard(static_cast<size_t>(per_rank));
      for (int64_t i = 0; i < per_rank; ++i) {
        int64_t position = (i * num_replicas_ + rank_) % std::max<int64_t>(n, 1);
        shard[static_cast<size_t>(i)] = order[static_cast<size_t>(position)];
      }
      order = std::move(shard);
    }
    order_ = std::make_shared<const std::vector<int64_t>>(std::move(order));
  }
  epoch_ = epoch;
  consumed_ = skip_batches;
  active_ = true;
  if (options_.num_workers > 0) {
    if (!workers_) workers_ = std::make_unique<Workers>(dataset_, options_, collation_);
    workers_->restart(order_, skip_batches, num_batches);
  }
}

std::optional<Batch> DataLoader::next() {
  LUMEN_CHECK(active_,
              "DataLoader::next: no epoch has begun; call begin_epoch(epoch) first (or iterate "
              "over loader.epoch(e))");
  if (consumed_ >= size()) return std::nullopt;
  // A batch whose loading threw counts as delivered: the next call goes on with the next one.
  int64_t k = consumed_++;
  if (workers_) return workers_->take(k);
  NoGradGuard no_grad;
  return load_batch(*dataset_, order_.get(), k, options_.batch_size, collation_);
}

DataLoader::EpochRange DataLoader::epoch(int64_t epoch, int64_t skip_batches) {
  begin_epoch(epoch, skip_batches);
  return EpochRange(this);
}

State DataLoader::state_dict() const {
  State s;
  s.attrs["seed"] = static_cast<int64_t>(seed_);  // the bits of the u64 seed
  s.attrs["epoch"] = epoch_;
  s.attrs["batches_consumed"] = consumed_;
  return s;
}

void DataLoader::load_state_dict(const State& state) {
  int64_t epoch = state.get_int("epoch"), consumed = state.get_int("batches_consumed");
  LUMEN_CHECK(epoch >= -1, "DataLoader::load_state_dict: epoch ", epoch, " is negative");
  LUMEN_CHECK(consumed >= 0, "DataLoader::load_state_dict: batches_consumed ", consumed,
              " is negative");
  seed_ = static_cast<uint64_t>(state.get_int("seed"));
  epoch_ = epoch;
  consumed_ = consumed;
  // The loaded position is resumed by begin_epoch(epoch(), batches_consumed()).
  active_ = false;
  order_.reset();
  if (workers_) workers_->restart(nullptr, 0, 0);
}

}  // namespace lumen
