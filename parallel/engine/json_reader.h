// A strict reader for JSON configuration files. DeepSpeed ignores unknown
// top-level keys (DeepSpeed#653: "gradient_clipp1ng" silently dropped) and
// Python's json keeps the last of two duplicate keys; here both are errors
// that name the key and where it sits (docs/architecture.md: a user error
// names the key and what would be valid).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace ms::engine {

// Objects and arrays nested deeper than this are refused while parsing.
inline constexpr size_t kMaxConfigDepth = 64;

// Parses `text`; a syntax error, a duplicate key (at any depth) or nesting
// deeper than kMaxConfigDepth is an ms::Error starting "<source>: " that
// names the key's JSON path.
nlohmann::json parse_json_strict(const std::string& text, const std::string& source);

// The closest of `candidates` to `word` (edit distance, case-insensitive),
// or "" when none is close enough to be a plausible typo.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

// One JSON object being read. Every accessor records its key as valid here;
// finish() then rejects any other key with a did-you-mean among those. An
// absent key (or null, for the keys DeepSpeed defaults to None) gives
// std::nullopt; a present one of the wrong type or out of range throws,
// naming the path, the value and what is expected.
class Section {
 public:
  // `given` (may be null) collects the paths of every key read that was present.
  Section(const nlohmann::json& obj, std::string path, std::string source,
          std::set<std::string>* given);

  std::string path(const std::string& key) const;  // "zero_optimization.stage"
  bool has(const std::string& key);                // present and not null (marks it valid)
  std::optional<int64_t> integer(const std::string& key, int64_t lo, int64_t hi);
  std::optional<double> real(const std::string& key, double lo, double hi);
  std::optional<bool> boolean(const std::string& key);
  std::optional<std::string> choice(const std::string& key, const std::vector<std::string>& valid);
  // A nested object (an empty one when absent).
  Section object(const std::string& key);
  // Valid but read by the caller (e.g. an array).
  const nlohmann::json* raw(const std::string& key);

  // DeepSpeed keys minispeed knows but does not implement: named as such
  // instead of "unknown". Then any key not read is an error.
  void finish(const std::vector<std::string>& not_implemented = {}) const;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  // The value as JSON, at most 60 characters, in time bounded by that length.
  static std::string show(const nlohmann::json& v);

 private:
  const nlohmann::json* lookup(const std::string& key);
  const nlohmann::json* obj_;
  std::string path_, source_;
  std::set<std::string>* given_;
  std::vector<std::string> read_;
};

}  // namespace ms::engine
