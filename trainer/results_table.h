#pragma once
// The table Lightning prints after a direct Trainer::validate or Trainer::test call:
//   ────────────────────────────────────────
//         Test metric         DataLoader 0
//   ────────────────────────────────────────
//          test_acc        0.8859999775886536
//   ────────────────────────────────────────
// Metric names are centred in half the width, values (Python's repr) in a column as wide as
// the longest cell (at least 25, at most half the width), as Lightning's _print_results.
#include <map>
#include <string>

namespace lumen {

// stage: "validate" or "test" (the title reads "Validate metric", "Test metric"). Returns ""
// for no metrics. width: the bar's width in characters; 0 uses the terminal's (COLUMNS, then
// the tty's size, then 120 as Python's shutil.get_terminal_size).
std::string format_results_table(const std::string& stage,
                                 const std::map<std::string, double>& metrics, int width = 0);

}  // namespace lumen
