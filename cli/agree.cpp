#include "cli/agree.h"

#include <charconv>
#include <cstdint>

#include "parallel/comm/runtime.h"
#include "tensor/factory.h"

namespace ms {

namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

// The value as the program reads it, so spellings of one number agree.
std::string canonical(const std::string& v) {
  const char *begin = v.data(), *end = v.data() + v.size();
  int64_t i = 0;
  if (auto r = std::from_chars(begin, end, i); r.ec == std::errc() && r.ptr == end && !v.empty())
    return std::to_string(i);
  double d = 0;
  if (auto r = std::from_chars(begin, end, d); r.ec == std::errc() && r.ptr == end && !v.empty()) {
    char buf[64];
    auto out = std::to_chars(buf, buf + sizeof buf, d);  // shortest round-trip form
    return std::string(buf, out.ptr);
  }
  return v;
}

// FNV-1a: a stable 64-bit hash, the same in every process (std::hash need not be).
uint64_t fnv1a(const Fields& fields) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;  // field separator
  };
  for (const auto& [name, value] : fields) {
    mix(name);
    mix(canonical(value));
  }
  return h;
}

std::string serialize(const Fields& fields) {
  std::string s;
  for (const auto& [name, value] : fields) s += name + '\0' + value + '\0';
  return s;
}

Fields deserialize(const std::string& s) {
  Fields out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t a = s.find('\0', pos), b = a == std::string::npos ? a : s.find('\0', a + 1);
    if (b == std::string::npos) break;
    out.emplace_back(s.substr(pos, a - pos), s.substr(a + 1, b - a - 1));
    pos = b + 1;
  }
  return out;
}

std::string field_label(const std::string& name) {
  return name == "command" ? "the command" : "--" + name;
}

// Every rank's string, in rank order (two all-gathers: lengths, then bytes).
std::vector<std::string> all_gather_strings(Communicator& world, const std::string& mine) {
  const int D = world.size();
  Tensor len = from_vector(std::vector<int32_t>{static_cast<int32_t>(mine.size())}, {1});
  Tensor lens = from_vector(std::vector<int32_t>(D, 0), {D});
  world.all_gather(len, lens);
  std::vector<double> l = lens.to_vector();
  int64_t longest = 0;
  for (double x : l) longest = std::max(longest, static_cast<int64_t>(x));
  // One byte per i32 element: a few KB of flags, and no byte-typed tensors.
  std::vector<int32_t> bytes(longest, 0);
  for (size_t i = 0; i < mine.size(); ++i) bytes[i] = static_cast<unsigned char>(mine[i]);
  Tensor in = from_vector(bytes, {longest});
  Tensor all = from_vector(std::vector<int32_t>(longest * D, 0), {longest * D});
  world.all_gather(in, all);
  std::vector<double> v = all.to_vector();
  std::vector<std::string> out(D);
  for (int r = 0; r < D; ++r)
    for (int64_t i = 0; i < static_cast<int64_t>(l[r]); ++i)
      out[r] += static_cast<char>(static_cast<int>(v[r * longest + i]));
  return out;
}

}  // namespace

void agree_on_flags(Communicator& world, const std::string& command, const Flags& flags) {
  const int D = world.size();
  if (D == 1) return;
  Fields mine = flags.values();
  mine.insert(mine.begin(), {"command", command});
  const uint64_t h = fnv1a(mine);
  // The hash as two i32 halves: one small all-gather when all is well.
  Tensor hash = from_vector(
      std::vector<int32_t>{static_cast<int32_t>(h & 0xffffffffu), static_cast<int32_t>(h >> 32)},
      {2});
  Tensor hashes = from_vector(std::vector<int32_t>(2 * D, 0), {2 * D});
  world.all_gather(hash, hashes);
  std::vector<double> hs = hashes.to_vector();
  bool same = true;
  for (int r = 1; r < D; ++r) same = same && hs[2 * r] == hs[0] && hs[2 * r + 1] == hs[1];
  if (same) return;

  // They differ: every rank gathers every rank's flags and names the same field.
  std::vector<std::string> all = all_gather_strings(world, serialize(mine));
  std::vector<Fields> per_rank;
  for (const std::string& s : all) per_rank.push_back(deserialize(s));
  const Fields& first = per_rank[0];
  for (size_t i = 0; i < first.size(); ++i) {
    for (int r = 1; r < D; ++r) {
      const Fields& other = per_rank[r];
      std::string value = "(not set)";
      for (const auto& [name, v] : other)
        if (name == first[i].first) value = v;
      if (canonical(value) != canonical(first[i].second))
        throw AgreedError(str_cat("ranks disagree on ", field_label(first[i].first), ": ",
                                  first[i].second, " on rank 0, ", value, " on rank ", r,
                                  " (start every rank with the same command and flags)"));
    }
  }
  throw AgreedError(
      "ranks disagree on their flags (start every rank with the same command and flags)");
}

void agree_on_outcome(Communicator& world, const std::string& error) {
  const int D = world.size();
  Tensor failed = from_vector(std::vector<int32_t>{error.empty() ? 0 : 1}, {1});
  Tensor all = from_vector(std::vector<int32_t>(D, 0), {D});
  world.all_gather(failed, all);
  std::vector<double> f = all.to_vector();
  int first = -1, count = 0;
  for (int r = 0; r < D; ++r)
    if (f[r] != 0) count += 1, first = first < 0 ? r : first;
  if (count == 0) return;
  std::vector<std::string> messages = all_gather_strings(world, error);
  throw AgreedError(str_cat(messages[first], " (on rank ", first,
                            count > 1 ? str_cat(" and ", count - 1, " other rank(s)") : "", ")"));
}

}  // namespace ms
