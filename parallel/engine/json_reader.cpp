#include "parallel/engine/json_reader.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "tensor/error.h"

namespace ms::engine {

using nlohmann::json;

namespace {

const char* type_word(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an integer";
  }
}

// Where the parser is: one frame per open object or array.
struct Frame {
  bool array = false;
  std::set<std::string> keys;  // keys seen so far in this object
  std::string key;             // the current key (objects)
  int64_t index = -1;          // the current element (arrays)
};

// s cut to at most `limit` characters, with "..." where it was cut.
std::string shorten(std::string s, size_t limit) {
  if (s.size() > limit) s = s.substr(0, limit - 3) + "...";
  return s;
}

// Appends v as JSON to out, stopping once out holds `limit` characters: a
// value of any size costs O(limit), where v.dump() would copy all of it.
void dump_bounded(const json& v, std::string& out, size_t limit) {
  if (out.size() > limit) return;
  if (v.is_object() || v.is_array()) {
    out += v.is_object() ? '{' : '[';
    bool first = true;
    for (auto it = v.begin(); it != v.end() && out.size() <= limit; ++it) {
      if (!first) out += ", ";
      first = false;
      if (v.is_object()) out += json(it.key()).dump() + ": ";
      dump_bounded(*it, out, limit);
    }
    out += v.is_object() ? '}' : ']';
  } else {
    out += v.dump();
  }
}

std::string frames_path(const std::vector<Frame>& stack, size_t upto) {
  std::string p;
  for (size_t i = 0; i < upto; ++i) {
    if (stack[i].array) {
      p += '[';
      p += std::to_string(stack[i].index);
      p += ']';
    } else {
      if (!p.empty()) p += '.';
      p += stack[i].key;
    }
  }
  return p;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                  std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (same ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

json parse_json_strict(const std::string& text, const std::string& source) {
  // nlohmann's DOM parser keeps the last of duplicate keys silently, so the
  // parser callback tracks the keys of every open object itself.
  std::vector<Frame> stack;
  auto next_element = [&] {
    if (!stack.empty() && stack.back().array) ++stack.back().index;
  };
  json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& parsed) {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        next_element();
        // A config is a few levels deep; a file nested 100,000 deep (an
        // attacker's or a generator's bug) would overflow the stack of every
        // recursive walk of the value (dump, compare), so it stops here.
        if (stack.size() >= kMaxConfigDepth)
          throw Error(str_cat(source, ": JSON nested more than ", kMaxConfigDepth,
                              " deep at ", shorten(frames_path(stack, stack.size()), 120),
                              " (a configuration needs a few levels)"));
        stack.push_back(Frame{ev == json::parse_event_t::array_start, {}, {}, -1});
        break;
      case json::parse_event_t::key: {
        Frame& f = stack.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second)
          throw Error(str_cat(
              source, ": duplicate key \"", f.key, "\" at ", frames_path(stack, stack.size()),
              " (JSON parsers keep only one of the two values; write the key once)"));
        break;
      }
      case json::parse_event_t::value:
        next_element();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        stack.pop_back();
        break;
    }
    return true;
  };
  try {
    return json::parse(text, cb);
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line L, column C: ..."
    std::string what = e.what();
    size_t at = what.find("] ");
    throw Error(
        str_cat(source, ": invalid JSON: ", at == std::string::npos ? what : what.substr(at + 2)));
  }
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const std::string& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  // A typo changes a few characters; more than a third of the word is another word.
  size_t limit = std::max<size_t>(2, std::max(word.size(), best.size()) / 3);
  return best_d <= limit ? best : "";
}

Section::Section(const json& obj, std::string path, std::string source,
                 std::set<std::string>* given)
    : obj_(&obj), path_(std::move(path)), source_(std::move(source)), given_(given) {}

std::string Section::path(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

std::string Section::show(const json& v) {
  std::string s;
  dump_bounded(v, s, 60);
  return shorten(s, 60);
}

void Section::fail(const std::string& key, const std::string& what) const {
  throw Error(str_cat(source_, ": ", path(key), " ", what));
}

const json* Section::lookup(const std::string& key) {
  read_.push_back(key);
  auto it = obj_->find(key);
  if (it == obj_->end() || it->is_null()) return nullptr;
  if (given_) given_->insert(path(key));
  return &*it;
}

bool Section::has(const std::string& key) {
  return lookup(key) != nullptr;
}

const json* Section::raw(const std::string& key) {
  return lookup(key);
}

std::optional<int64_t> Section::integer(const std::string& key, int64_t lo, int64_t hi) {
  const json* v = lookup(key);
  if (!v) return std::nullopt;
  double d = 0;
  bool integral = false;
  if (v->is_number_integer()) {
    // Unsigned values past int64 are out of range below, not wrapped.
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      fail(key, str_cat("must be in [", lo, ", ", hi, "], got ", show(*v)));
    int64_t i = v->get<int64_t>();
    if (i < lo || i > hi) fail(key, str_cat("must be in [", lo, ", ", hi, "], got ", show(*v)));
    return i;
  }
  if (v->is_number_float()) {
    // 5e8 (as DeepSpeed's docs write bucket sizes) is a whole number.
    d = v->get<double>();
    integral = std::isfinite(d) && std::floor(d) == d;
  }
  if (!integral) {
    std::string hint =
        v->is_string() && v->get<std::string>() == "auto"
            ? " (\"auto\" is filled in by the Hugging Face integration; write the number)"
            : "";
    fail(key, str_cat("must be an integer, got ", show(*v), " (", type_word(*v), ")", hint));
  }
  // 2^63 compares equal to (double)INT64_MAX but does not fit an int64.
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi) || d >= 0x1p63)
    fail(key, str_cat("must be in [", lo, ", ", hi, "], got ", show(*v)));
  return static_cast<int64_t>(d);
}

std::optional<double> Section::real(const std::string& key, double lo, double hi) {
  const json* v = lookup(key);
  if (!v) return std::nullopt;
  if (!v->is_number()) {
    std::string hint =
        v->is_string() && v->get<std::string>() == "auto"
            ? " (\"auto\" is filled in by the Hugging Face integration; write the number)"
            : "";
    fail(key, str_cat("must be a number, got ", show(*v), " (", type_word(*v), ")", hint));
  }
  double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    std::string range =
        std::isinf(hi) ? str_cat("a finite number >= ", lo) : str_cat("in [", lo, ", ", hi, "]");
    fail(key, str_cat("must be ", range, ", got ", show(*v)));
  }
  return d;
}

std::optional<bool> Section::boolean(const std::string& key) {
  const json* v = lookup(key);
  if (!v) return std::nullopt;
  if (!v->is_boolean())
    fail(key, str_cat("must be true or false, got ", show(*v), " (", type_word(*v), ")"));
  return v->get<bool>();
}

std::optional<std::string> Section::choice(const std::string& key,
                                           const std::vector<std::string>& valid) {
  const json* v = lookup(key);
  if (!v) return std::nullopt;
  std::string list;
  for (const std::string& c : valid) list += (list.empty() ? "\"" : ", \"") + c + "\"";
  if (!v->is_string())
    fail(key,
         str_cat("must be a string (one of ", list, "), got ", show(*v), " (", type_word(*v), ")"));
  std::string s = v->get<std::string>();
  if (std::find(valid.begin(), valid.end(), s) == valid.end()) {
    std::string near = did_you_mean(s, valid);
    fail(key, str_cat("must be one of ", list, ", got \"", s, "\"",
                      near.empty() ? "" : str_cat("; did you mean \"", near, "\"?")));
  }
  return s;
}

Section Section::object(const std::string& key) {
  static const json kEmpty = json::object();
  const json* v = lookup(key);
  if (!v) return Section(kEmpty, path(key), source_, given_);
  if (!v->is_object())
    fail(key, str_cat("must be an object ({...}), got ", show(*v), " (", type_word(*v), ")"));
  return Section(*v, path(key), source_, given_);
}

void Section::finish(const std::vector<std::string>& not_implemented) const {
  for (auto it = obj_->begin(); it != obj_->end(); ++it) {
    const std::string& k = it.key();
    if (std::find(read_.begin(), read_.end(), k) != read_.end()) continue;
    if (std::find(not_implemented.begin(), not_implemented.end(), k) != not_implemented.end())
      fail(k, "is a DeepSpeed key that minispeed does not implement; remove it");
    std::vector<std::string> valid(read_.begin(), read_.end());
    std::sort(valid.begin(), valid.end());
    valid.erase(std::unique(valid.begin(), valid.end()), valid.end());
    std::string near = did_you_mean(k, valid), list;
    for (const std::string& c : valid) list += (list.empty() ? "" : ", ") + c;
    throw Error(str_cat(source_, ": unknown key \"", k, "\" at ", path(k),
                        near.empty() ? "" : str_cat("; did you mean \"", near, "\"?"),
                        " (valid keys", path_.empty() ? "" : " in " + path_, ": ", list, ")"));
  }
}

}  // namespace ms::engine
