// The one progress printer (see cli_progress.h).
#include "cli_progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace preimage::cli {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds)) return "?";
  const long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

ProgressPrinter::ProgressPrinter(bool quiet, std::string label, std::string count, std::string unit,
                                 double scale)
    : quiet_(quiet),
      tty_(isatty(STDERR_FILENO)),
      label_(std::move(label)),
      count_(std::move(count)),
      unit_(std::move(unit)),
      scale_(scale),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

void ProgressPrinter::restart(std::string label, long long first) {
  finish();
  label_ = std::move(label);
  first_ = first;
  shown_ = -1;
  start_ = last_ = std::chrono::steady_clock::now();
}

void ProgressPrinter::update(long long done, long long total, const std::string& detail) {
  if (quiet_ || done == shown_) return;  // a last batch may report the total twice
  shown_ = done;
  const auto now = std::chrono::steady_clock::now();
  const double el = std::chrono::duration<double>(now - start_).count();
  const double rate = done > first_ ? double(done - first_) / std::max(el, 1e-9) : 0;
  const double eta = rate > 0 ? double(total - done) / rate : NAN;
  char rate_text[64] = "";
  if (!unit_.empty())
    std::snprintf(rate_text, sizeof rate_text, "%.2f %s/s, ", rate * scale_, unit_.c_str());
  const std::string extra = detail.empty() ? "" : " " + detail;
  if (tty_) {
    const int width = 24;
    const int fill = total > 0 ? int(std::clamp<long long>(width * done / total, 0, width)) : 0;
    std::fprintf(stderr, "\r%s [%s%s] %lld/%lld%s (%sETA %s)   ", label_.c_str(),
                 std::string(fill, '#').c_str(), std::string(width - fill, '-').c_str(), done,
                 total, extra.c_str(), rate_text, format_duration(eta).c_str());
    std::fflush(stderr);
    drawn_ = true;
  } else if (done == total || done == first_ + 1 || (every_ > 0 && done % every_ == 0) ||
             std::chrono::duration<double>(now - last_).count() >= 5.0) {
    std::fprintf(stderr, "%s%s%s %lld/%lld%s (%sETA %s)\n", label_.c_str(),
                 count_.empty() ? "" : " ", count_.c_str(), done, total, extra.c_str(), rate_text,
                 format_duration(eta).c_str());
    last_ = now;
  }
}

void ProgressPrinter::finish() {
  if (!quiet_ && tty_ && drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace preimage::cli
