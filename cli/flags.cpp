#include "cli/flags.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "tensor/error.h"

namespace ms {

namespace {
// Edit distance, to suggest the flag the user probably meant.
size_t distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cur = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] != b[j - 1] ? 1u : 0u)});
      prev = cur;
    }
  }
  return row[b.size()];
}
}  // namespace

void Flags::add(const std::string& name, const std::string& default_value,
                const std::string& help) {
  order_.push_back(name);
  flags_[name] = {default_value, default_value, help};
}

void Flags::add_switch(const std::string& name, const std::string& help) {
  order_.push_back(name);
  flags_[name] = {"0", "0", help, true};
}

bool Flags::on(const std::string& name) const {
  const Flag& f = get(name);
  MS_ASSERT(f.is_switch, "flag --", name, " is not a switch");
  return f.value == "1";
}

bool Flags::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    MS_CHECK(arg.rfind("--", 0) == 0, program_, ": unexpected argument '", arg,
             "' (flags look like --name value; see --help)");
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    if (!flags_.count(name)) {
      std::string best;
      size_t best_d = 4;
      for (const auto& known : order_)
        if (size_t d = distance(name, known); d < best_d) best_d = d, best = known;
      throw Error(
          str_cat(program_, ": unknown flag --", name,
                  best.empty() ? std::string(" (see --help)") : " (did you mean --" + best + "?)"));
    }
    if (flags_[name].is_switch) {
      // Stored as "0"/"1", so every spelling hashes alike across ranks (cli/agree.h).
      MS_CHECK(!inline_value || value == "0" || value == "1" || value == "false" || value == "true",
               program_, ": switch --", name, " takes no value (or =0, =1, =false, =true), got '",
               value, "'");
      const bool on = !inline_value || value == "1" || value == "true";
      value = std::string(1, on ? '1' : '0');
    } else if (!inline_value) {
      MS_CHECK(i + 1 < argc, program_, ": flag --", name, " needs a value (", flags_[name].help,
               ")");
      value = argv[++i];
    }
    flags_[name].value = value;
    given_[name] = true;
  }
  return true;
}

const Flags::Flag& Flags::get(const std::string& name) const {
  auto it = flags_.find(name);
  MS_ASSERT(it != flags_.end(), "flag --", name, " was never declared");
  return it->second;
}

void Flags::set(const std::string& name, const std::string& value) {
  auto it = flags_.find(name);
  MS_ASSERT(it != flags_.end(), "flag --", name, " was never declared");
  it->second.value = value;
}

std::string Flags::str(const std::string& name) const {
  return get(name).value;
}

// Parses the whole of `v` with `parse` (std::stoll or std::stod), or nothing.
template <typename T, typename Parse>
static bool parse_all(const std::string& v, Parse parse, T& out) {
  size_t used = 0;
  try {
    out = parse(v, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == v.size() && !v.empty();
}

int64_t Flags::integer(const std::string& name) const {
  const std::string& v = get(name).value;
  int64_t out = 0;
  bool ok = parse_all(
      v, [](const std::string& s, size_t* used) { return std::stoll(s, used); }, out);
  MS_CHECK(ok, program_, ": --", name, " must be an integer, got '", v, "'");
  return out;
}

double Flags::real(const std::string& name) const {
  const std::string& v = get(name).value;
  double out = 0;
  bool ok = parse_all(
      v, [](const std::string& s, size_t* used) { return std::stod(s, used); }, out);
  MS_CHECK(ok, program_, ": --", name, " must be a number, got '", v, "'");
  return out;
}

std::string Flags::help() const {
  std::ostringstream os;
  os << "usage: " << program_ << " [flags]\n" << summary_ << "\n\nflags:\n";
  for (const auto& name : order_) {
    const Flag& f = flags_.at(name);
    std::string left = "  --" + name;
    left.resize(std::max<size_t>(left.size() + 1, 22), ' ');
    os << left << f.help;
    if (f.is_switch)
      os << " (a switch: give it alone to turn it on)";
    else if (!f.default_value.empty())
      os << " (default: " << f.default_value << ")";
    os << "\n";
  }
  return os.str();
}

std::string Flags::summary_line() const {
  std::string s;
  for (const auto& name : order_) s += " --" + name + " " + flags_.at(name).value;
  return s.substr(s.empty() ? 0 : 1);
}

std::vector<std::pair<std::string, std::string>> Flags::values() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& name : order_) out.emplace_back(name, flags_.at(name).value);
  return out;
}

}  // namespace ms
