#include "trainer/model_summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "tensor/error.h"
#include "trainer/trainer.h"

namespace lumen {

namespace {

// Python's format(n, ",d").
std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  int count = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (count && count % 3 == 0) out += ',';
    out += *it;
    ++count;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::string pad(const std::string& s, size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

}  // namespace

std::string human_readable_count(int64_t number) {
  LUMEN_CHECK(number >= 0, "human_readable_count: expected a count >= 0, got ", number);
  static const char* const kLabels[] = {" ", "K", "M", "B", "T"};
  int num_digits =
      number > 0 ? static_cast<int>(std::floor(std::log10(static_cast<double>(number)))) + 1 : 1;
  int num_groups = std::min((num_digits + 2) / 3, 5);
  double scaled = static_cast<double>(number) * std::pow(10.0, -3.0 * (num_groups - 1));
  int index = num_groups - 1;
  if (index < 1 || scaled >= 100) {
    return with_commas(static_cast<int64_t>(scaled)) + " " + kLabels[index];
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", scaled, kLabels[index]);
  return buf;
}

std::string model_summary_table(nn::Module& module, int max_depth) {
  LUMEN_CHECK(max_depth >= -1, "ModelSummary: max_depth must be >= -1, got ", max_depth);
  // The rows: children for depth 1, every descendant otherwise, then cut at max_depth.
  std::vector<std::pair<std::string, nn::Module*>> layers;
  if (max_depth == 1) {
    layers = module.named_children();
  } else if (max_depth != 0) {
    layers = module.named_modules();
    layers.erase(layers.begin());  // not the root
    if (max_depth > 1) {
      std::erase_if(layers, [&](const auto& l) {
        return std::count(l.first.begin(), l.first.end(), '.') >= max_depth;
      });
    }
  }
  std::vector<std::vector<std::string>> cols(5);
  std::vector<std::string> headers = {" ", "Name", "Type", "Params", "Mode"};
  int64_t layer_params = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto& [name, m] = layers[i];
    int64_t n = m->num_parameters();
    cols[0].push_back(std::to_string(i));
    cols[1].push_back(name);
    cols[2].push_back(m->type_name());
    cols[3].push_back(human_readable_count(n));
    cols[4].push_back(m->is_training() ? "train" : "eval");
  }
  // Lightning's total_layer_params sums the listed rows (so nested rows count twice and hide
  // the leftover row); only the children's sum identifies parameters held by the root itself.
  for (const auto& [name, child] : module.named_children()) layer_params += child->num_parameters();
  int64_t total = module.num_parameters();
  int64_t trainable = module.num_parameters(true);
  int64_t leftover = total - layer_params;
  if (leftover > 0 && max_depth != 0) {
    cols[0].push_back(" ");
    cols[1].push_back("other params");
    cols[2].push_back("n/a");
    cols[3].push_back(human_readable_count(leftover));
    cols[4].push_back("n/a");
  }
  std::vector<size_t> widths;
  for (size_t c = 0; c < cols.size(); ++c) {
    size_t w = headers[c].size();
    for (const auto& s : cols[c]) w = std::max(w, s.size());
    widths.push_back(w);
  }
  size_t total_width = 3 * (cols.size() + 1);
  for (size_t w : widths) total_width += w;

  std::string out;
  for (size_t c = 0; c < cols.size(); ++c) out += (c ? " | " : "") + pad(headers[c], widths[c]);
  out += "\n" + std::string(total_width, '-');
  for (size_t r = 0; r < cols[0].size(); ++r) {
    out += "\n";
    for (size_t c = 0; c < cols.size(); ++c) out += (c ? " | " : "") + pad(cols[c][r], widths[c]);
  }
  out += "\n" + std::string(total_width, '-');

  int64_t in_train = 0, in_eval = 0;
  auto all = module.named_modules();
  for (size_t i = 1; i < all.size(); ++i) (all[i].second->is_training() ? in_train : in_eval)++;
  char size_buf[64];
  std::snprintf(size_buf, sizeof size_buf, "%.3f", static_cast<double>(total) * 4.0 * 1e-6);
  std::string size = size_buf;
  // Python's ",.3f": thousands separators in the integer part.
  size_t point = size.find('.');
  size = with_commas(std::stoll(size.substr(0, point))) + size.substr(point);
  out += "\n" + pad(human_readable_count(trainable), 10) + "Trainable params";
  out += "\n" + pad(human_readable_count(total - trainable), 10) + "Non-trainable params";
  out += "\n" + pad(human_readable_count(total), 10) + "Total params";
  out += "\n" + pad(size, 10) + "Total estimated model params size (MB)";
  out += "\n" + pad(std::to_string(in_train), 10) + "Modules in train mode";
  out += "\n" + pad(std::to_string(in_eval), 10) + "Modules in eval mode";
  return out;
}

ModelSummary::ModelSummary(ModelSummaryOptions options) : options_(options) {
  LUMEN_CHECK(options_.max_depth >= -1, "ModelSummary: max_depth must be >= -1, got ",
              options_.max_depth);
}

void ModelSummary::on_fit_start(Trainer& trainer, LightningModule& module) {
  if (options_.max_depth == 0 || !trainer.is_global_zero()) return;
  std::cout << model_summary_table(module, options_.max_depth) << "\n";
}

}  // namespace lumen
