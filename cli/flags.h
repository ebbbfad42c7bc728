// A small command-line flag parser: each flag is declared once with its
// default and help text, so --help can never drift from what is parsed.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ms {

class Flags {
 public:
  Flags(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}

  void add(const std::string& name, const std::string& default_value, const std::string& help);
  // A switch: off by default, on when given bare (`--sequence-parallel`);
  // `--name=0|1|false|true` also works. on() reads it.
  void add_switch(const std::string& name, const std::string& help);
  // Parses "--name value" and "--name=value"; throws ms::Error for unknown
  // flags (naming the closest valid one) or a missing value. Returns false if
  // --help was given (after printing help).
  bool parse(int argc, char** argv, int first = 1);

  // Replaces a flag's value as if it were its default (given() stays as it
  // was): how `train --config` hands the config's values to the flag reader.
  void set(const std::string& name, const std::string& value);

  std::string str(const std::string& name) const;
  int64_t integer(const std::string& name) const;  // error names the flag and the bad value
  double real(const std::string& name) const;
  bool on(const std::string& name) const;  // a switch's value
  bool given(const std::string& name) const { return given_.count(name) > 0; }
  std::string help() const;
  // The values actually used, one "--flag value" per entry (for logs).
  std::string summary_line() const;
  // Every declared flag and its value (given or default), in declaration order.
  std::vector<std::pair<std::string, std::string>> values() const;

 private:
  struct Flag {
    std::string value, default_value, help;
    bool is_switch = false;
  };
  const Flag& get(const std::string& name) const;
  std::string program_, summary_;
  std::vector<std::string> order_;
  std::map<std::string, Flag> flags_;
  std::map<std::string, bool> given_;
};

}  // namespace ms
