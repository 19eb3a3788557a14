// A minimal JSON writer for sidecars: objects, arrays, strings (escaped), numbers (NaN/Inf as
// null), booleans. Produces compact, valid JSON with stable key order (insertion order).
#pragma once
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace preimage::cli {

class Json {
 public:
  Json& begin_object(const std::string& key = "") { return open(key, '{'); }
  Json& end_object() { return close('}'); }
  Json& begin_array(const std::string& key = "") { return open(key, '['); }
  Json& end_array() { return close(']'); }
  Json& value(const std::string& key, const std::string& v) {
    prefix(key);
    quote(v);
    return *this;
  }
  Json& value(const std::string& key, const char* v) { return value(key, std::string(v)); }
  Json& value(const std::string& key, double v) {
    prefix(key);
    if (!std::isfinite(v)) {
      out_ += "null";
    } else {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", v);
      out_ += buf;
    }
    return *this;
  }
  Json& value(const std::string& key, int v) { return value(key, double(v)); }
  Json& value(const std::string& key, long long v) {
    prefix(key);
    out_ += std::to_string(v);
    return *this;
  }
  Json& value(const std::string& key, size_t v) { return value(key, (long long)v); }
  Json& value(const std::string& key, bool v) {
    prefix(key);
    out_ += v ? "true" : "false";
    return *this;
  }
  // A value that is already JSON text (e.g. another Json's str()), inserted verbatim.
  Json& raw(const std::string& key, const std::string& json_text) {
    prefix(key);
    out_ += json_text;
    return *this;
  }
  Json& null(const std::string& key) { return raw(key, "null"); }
  const std::string& str() const { return out_; }

 private:
  Json& open(const std::string& key, char c) {
    prefix(key);
    out_ += c;
    first_.push_back(true);
    return *this;
  }
  Json& close(char c) {
    out_ += c;
    first_.pop_back();
    return *this;
  }
  void prefix(const std::string& key) {
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
    if (!key.empty()) {
      quote(key);
      out_ += ':';
    }
  }
  void quote(const std::string& s) {
    out_ += '"';
    for (unsigned char ch : s) {
      switch (ch) {
        case '"':
          out_ += "\\\"";
          break;
        case '\\':
          out_ += "\\\\";
          break;
        case '\n':
          out_ += "\\n";
          break;
        case '\r':
          out_ += "\\r";
          break;
        case '\t':
          out_ += "\\t";
          break;
        default:
          if (ch < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", ch);
            out_ += buf;
          } else {
            out_ += char(ch);
          }
      }
    }
    out_ += '"';
  }
  std::string out_;
  std::vector<bool> first_;
};

}  // namespace preimage::cli
