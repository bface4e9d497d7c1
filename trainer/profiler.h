#pragma once
// Lightning's profilers: how long each action of a run took. The Trainer times every callback
// and module hook ("[Callback]ProgressBar.on_train_batch_end",
// "[LightningModule]Classifier.on_train_epoch_end"), the steps and the backward
// ("[Strategy]SingleDeviceStrategy.training_step", ".backward"), zero_grad and, as Lightning's
// optimizer_step hook around its closure, a stepping batch's training step, backward and step
// ("[LightningModule]Classifier.optimizer_step"), fetching batches
// ("[_TrainingEpochLoop].train_dataloader_next", "[_EvaluationLoop].val_next"), and whole
// epochs and batches ("run_training_epoch", "run_training_batch"), and describes the profile when
// a stage ends. Times are the host's: on a GPU, an action that only launches kernels ends
// before they do (as in Lightning's SimpleProfiler).
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace lumen {

class Profiler {
 public:
  virtual ~Profiler() = default;
  virtual void start(const std::string& action) = 0;
  virtual void stop(const std::string& action) = 0;
  // The report of everything recorded so far ("" when nothing was).
  virtual std::string summary() const = 0;

  // Called by the Trainer when a stage starts: the stage names the report ("FIT Profiler
  // Report") and the file; local_rank is set under DDP only; log_dir is where a report file
  // goes unless the profiler has a dirpath of its own; only the global rank 0 prints.
  virtual void setup(const std::string& stage, std::optional<int> local_rank,
                     const std::string& log_dir, bool global_zero = true);
  // Writes summary() to {dirpath}/{stage}-{filename}[-{local_rank}].txt (appended) when the
  // profiler has a filename, else prints it on stdout (global rank 0 only). The Trainer calls
  // it when a stage ends.
  void describe();

  // Times its scope as `action`: auto timing = profiler.profile("my_action").
  class Scope {
   public:
    Scope(Profiler* profiler, std::string action);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Profiler* profiler_;
    std::string action_;
  };
  Scope profile(const std::string& action) { return Scope(this, action); }

 protected:
  Profiler(std::string dirpath, std::string filename);
  std::string stage_;
  std::optional<int> local_rank_;
  bool global_zero_ = true;
  std::string dirpath_, filename_;
};

struct SimpleProfilerOptions {
  std::string dirpath = "";   // "": the Trainer's log_dir
  std::string filename = "";  // "": the report goes to stdout
  // Columns: mean, number of calls, total and share of the whole time (else mean and total).
  bool extended = true;
};

// Lightning's SimpleProfiler: the mean and total time of each action, sorted by total time.
// Records accumulate over the stages of its Trainer, as Lightning's do; "Total" is the time
// since the profiler was made.
class SimpleProfiler : public Profiler {
 public:
  explicit SimpleProfiler(SimpleProfilerOptions options = {});
  void start(const std::string& action) override;
  void stop(const std::string& action) override;
  std::string summary() const override;

  struct Record {
    int64_t calls = 0;
    double total_seconds = 0;
  };
  const std::map<std::string, Record>& records() const { return records_; }

 private:
  using Clock = std::chrono::steady_clock;
  bool extended_;
  Clock::time_point created_ = Clock::now();
  std::map<std::string, Clock::time_point> running_;
  std::map<std::string, Record> records_;
};

}  // namespace lumen
