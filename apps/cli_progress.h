// The command line's one progress printer: a bar redrawn in place on a terminal, plain lines
// otherwise (the first, the last, every `every`-th and at least every 5 s), nothing when quiet.
// All on stderr, so stdout stays the command's result.
#pragma once
#include <chrono>
#include <string>

namespace preimage::cli {

class ProgressPrinter {
 public:
  // label: "optimizing", "features", ...; count: the word before "done/total" in plain lines
  // ("iteration", "" for none); unit: the rate's unit ("it", "img"); scale: units per count.
  ProgressPrinter(bool quiet, std::string label, std::string count = "", std::string unit = "",
                  double scale = 1);
  ~ProgressPrinter() { finish(); }
  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;

  // A new stage: its label, and the count it resumes after (the rate counts this process's work).
  void restart(std::string label, long long first = 0);
  // done of total; detail (e.g. "loss 1.2e-3") follows the count.
  void update(long long done, long long total, const std::string& detail = "");
  // Ends a drawn bar's line.
  void finish();
  // Plain lines also at every multiple of n (0: only by time).
  void every(long long n) { every_ = n; }

 private:
  bool quiet_, tty_, drawn_ = false;
  std::string label_, count_, unit_;
  double scale_;
  long long first_ = 0, shown_ = -1, every_ = 0;
  std::chrono::steady_clock::time_point start_, last_;
};

// "m:ss", or "?" when not finite.
std::string format_duration(double seconds);

}  // namespace preimage::cli
