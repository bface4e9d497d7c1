// Fashion-MNIST with a training loop written by hand on Fabric, Lightning Fabric's way: the MLP
// of fashion_mnist_mlp.cpp (784 -> 256 -> 10, AdamW 1e-3, batch 128), whose loop is spelled out
// here while Fabric handles the device, the precision, DDP under mpirun and checkpoints.
//   build/fabric_fashion_mnist [--epochs N] [--precision P] [--accelerator A] [--data DIR]
//                              [--resume CKPT] [--bench]
// Each epoch ends with runs/fabric_fashion_mnist/last.ckpt; --resume takes it back and goes on.
#include <lumen/lumen.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "examples/command_line.h"

using namespace lumen;

namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The share of correct predictions over all ranks' shards.
double accuracy(Fabric& fabric, const FabricModule<nn::Sequential>& model,
                FabricDataLoader& loader) {
  NoGradGuard no_grad;
  model->eval();
  double correct = 0, seen = 0;
  for (Batch& b : loader) {
    const auto n = static_cast<double>(b[1].numel());
    correct += metrics::accuracy(model(b[0]), b[1]).item() * n;
    seen += n;
  }
  model->train();
  Tensor totals = fabric.all_reduce(from_vector<double>({correct, seen}, {2}), dist::ReduceOp::sum);
  return totals.to_vector<double>()[0] / totals.to_vector<double>()[1];
}

}  // namespace

int main(int argc, char** argv) {
  examples::CommandLine cl{.epochs = 10};
  std::string resume;
  if (!examples::parse_command_line(argc, argv, cl, "DIR",
                                    {{"--resume", "CKPT", [&](const char* v) { resume = v; }}}))
    return 2;
  const std::string root = "runs/fabric_fashion_mnist";
  try {
    seed_everything(42);
    std::vector<std::shared_ptr<Logger>> loggers;
    if (!cl.bench)
      loggers.push_back(std::make_shared<CSVLogger>(CSVLoggerOptions{.save_dir = root}));
    Fabric fabric({.accelerator = cl.accelerator, .precision = cl.precision, .loggers = loggers});

    io::FashionMNISTOptions data_options{.batch_size = 128};
    if (!cl.data.empty()) data_options.data_dir = cl.data;
    io::FashionMNIST data(data_options);
    // One process per node checks the files; then each sets up its own copy.
    fabric.rank_zero_first([&] { data.prepare_data(); }, /*local=*/true);
    data.setup("fit");
    data.setup("test");

    nn::Sequential net{std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(784, 256),
                       std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(256, 10)};
    optim::AdamW adamw(net.parameters(), {.lr = 1e-3});
    auto [model, optimizer] = fabric.setup(net, adamw);
    auto train_data = data.train_dataloader(), val_data = data.val_dataloader(),
         test_data = data.test_dataloader();
    FabricDataLoader train = fabric.setup_dataloaders(*train_data);
    FabricDataLoader val = fabric.setup_dataloaders(*val_data);
    FabricDataLoader test = fabric.setup_dataloaders(*test_data);

    int64_t epochs_done = 0, step = 0;
    FabricState state{{"model", model},
                      {"optimizer", optimizer},
                      {"train_loader", train},
                      {"epochs_done", epochs_done},
                      {"step", step}};
    if (!resume.empty()) {
      fabric.load(resume, state);
      fabric.print("resumed from ", resume, " after epoch ", epochs_done - 1);
    }
    while (epochs_done < cl.epochs) {
      const int64_t epoch = epochs_done;
      auto start = std::chrono::steady_clock::now();
      Tensor loss;
      for (Batch& b : train) {
        if (cl.bench && step == 0) std::printf("first_step_unix=%.6f\n", unix_now());
        optimizer.zero_grad();
        loss = nn::functional::cross_entropy(model(b[0]), b[1]);
        fabric.backward(loss);
        optimizer.step();
        if (++step % 50 == 0) fabric.log("train_loss", loss, step);
      }
      ++epochs_done;
      if (cl.bench) {
        // Reading the last loss waits for what the epoch queued on a GPU, so it counts here.
        (void)loss.item();
        std::printf(
            "epoch=%lld train_seconds=%.4f\n", static_cast<long long>(epoch),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        std::fflush(stdout);
        continue;
      }
      double val_acc = accuracy(fabric, model, val);
      fabric.log_dict({{"val_acc", val_acc}, {"epoch", static_cast<double>(epoch)}}, step);
      fabric.print("epoch ", epoch, ": val_acc ", val_acc);
      fabric.save(root + "/last.ckpt", state);
    }
    double test_acc = accuracy(fabric, model, test);
    if (cl.bench) {
      if (fabric.is_global_zero())
        std::printf("test_acc=%.4f\npeak_mem_bytes=%lld\n", test_acc,
                    static_cast<long long>(memory_stats(fabric.device()).peak_allocated));
    } else {
      fabric.print("test_acc ", test_acc, "; checkpoint and logs: ", root);
    }
    return 0;
  } catch (const lumen::Error& e) {
    std::fprintf(stderr, "fabric_fashion_mnist: %s\n", e.what());
    return 1;
  }
}
