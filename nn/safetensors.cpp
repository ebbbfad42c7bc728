#include "nn/safetensors.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>
#include <vector>

namespace ms {

// The format stores little-endian data and we memcpy it straight into tensors.
static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

namespace {

using json = nlohmann::json;
constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
// A real header nests 3 deep (object > entry > shape) and its longest array is a
// shape. Both limits are enforced while parsing, so a file of "[[[[..." or of a
// 50-million-dim shape is rejected before it becomes gigabytes of JSON values.
constexpr int kMaxJsonDepth = 8;
constexpr int64_t kMaxRank = 64;
constexpr uint64_t kMaxI64 = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

struct DTypeName {
  const char* name;
  DType dtype;
};
constexpr DTypeName kDTypes[] = {{"F32", DType::F32},
                                 {"F64", DType::F64},
                                 {"BF16", DType::BF16},
                                 {"F16", DType::F16},
                                 {"I32", DType::I32}};
constexpr const char* kSupported = "F32, F64, BF16, F16, I32";

const char* file_dtype_name(DType d) {
  for (const auto& e : kDTypes)
    if (e.dtype == d) return e.name;
  MS_ASSERT(false, "dtype without a safetensors name");
}

template <typename... Args>
[[noreturn]] void bad(const std::string& path, const Args&... args) {
  throw Error(str_cat("load_safetensors: '", path, "': ", args...));
}

// Names and JSON values in error messages are cut short: a hostile header could
// otherwise turn one error into a 100 MB string.
std::string cut(const std::string& s) {
  return s.size() <= 60 ? s : s.substr(0, 57) + "...";
}
std::string brief(const json& v) {
  return cut(v.dump());
}
// str_cat rather than "'" + std::string: GCC 12 at -O3 warns falsely (-Wrestrict) on the latter.
std::string quote(const std::string& name) {
  return str_cat("'", cut(name), "'");
}

// One tensor's header entry after validation.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

Entry parse_entry(const std::string& path, const std::string& name, const json& v,
                  uint64_t buffer_size) {
  const std::string who = "tensor " + quote(name);
  if (!v.is_object()) bad(path, who, ": entry must be an object, got ", brief(v));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!v.contains(key)) bad(path, who, ": entry is missing \"", key, "\"");

  Entry e{name, DType::F32, {}, 0, 0};
  const json& dt = v["dtype"];
  if (!dt.is_string()) bad(path, who, ": dtype must be a string, got ", brief(dt));
  const std::string& dts = dt.get_ref<const std::string&>();
  auto it = std::find_if(std::begin(kDTypes), std::end(kDTypes),
                         [&](const DTypeName& d) { return dts == d.name; });
  if (it == std::end(kDTypes))
    bad(path, who, ": unsupported dtype \"", cut(dts), "\" (supported: ", kSupported, ")");
  e.dtype = it->dtype;

  const json& shape = v["shape"];
  if (!shape.is_array()) bad(path, who, ": shape must be an array, got ", brief(shape));
  // Zero dims are skipped in the overflow check: with them numel is 0, but the
  // row-major strides still multiply the other dims and must fit in int64.
  uint64_t product = 1;
  for (const json& d : shape) {
    if (!d.is_number_integer())
      bad(path, who, ": shape dimension ", brief(d), " is not an integer");
    if (!d.is_number_unsigned()) bad(path, who, ": shape dimension ", brief(d), " is negative");
    uint64_t n = d.get<uint64_t>();
    if (n != 0 && (n > kMaxI64 || product > kMaxI64 / n))
      bad(path, who, ": shape ", brief(shape), " overflows the element count");
    if (n != 0) product *= n;
    e.shape.push_back(static_cast<int64_t>(n));
  }
  uint64_t elem = dtype_size(e.dtype);
  if (product > kMaxI64 / elem)
    bad(path, who, ": shape ", brief(shape), " overflows the byte size");
  uint64_t nbytes = static_cast<uint64_t>(shape_numel(e.shape)) * elem;

  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    bad(path, who, ": data_offsets must be [begin, end] with non-negative integers, got ",
        brief(off));
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  if (e.begin > e.end) bad(path, who, ": data_offsets ", brief(off), " has begin > end");
  if (e.end > buffer_size)
    bad(path, who, ": data_offsets ", brief(off), " end beyond the data buffer (", buffer_size,
        " bytes; truncated file?)");
  if (e.end - e.begin != nbytes)
    bad(path, who, ": data_offsets ", brief(off), " span ", e.end - e.begin, " bytes but shape ",
        brief(shape), " of ", dts, " needs ", nbytes);
  return e;
}

json parse_header(const std::string& path, const std::string& text) {
  // Per depth: whether the enclosing container is an array, and its length so far.
  bool in_array[kMaxJsonDepth + 2] = {};
  int64_t length[kMaxJsonDepth + 2] = {};
  auto guard = [&](int depth, json::parse_event_t event, json&) {
    using E = json::parse_event_t;
    if (depth > kMaxJsonDepth)
      bad(path, "header JSON is nested more than ", kMaxJsonDepth, " deep");
    if (event == E::value || event == E::object_start || event == E::array_start) {
      if (in_array[depth] && ++length[depth] > kMaxRank)
        bad(path, "header JSON has an array longer than ", kMaxRank,
            " (the most dims a shape may have)");
      if (event != E::value) {  // a new container: its elements sit one level deeper
        in_array[depth + 1] = event == E::array_start;
        length[depth + 1] = 0;
      }
    }
    return true;
  };
  try {
    return json::parse(text, guard);  // a throw from the guard aborts; the partial value is freed
  } catch (const json::exception& err) {
    bad(path, "header is not valid JSON: ", err.what());
  }
}

void read_exact(std::ifstream& in, void* dst, uint64_t n, const std::string& path,
                const std::string& what) {
  in.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
  if (static_cast<uint64_t>(in.gcount()) != n)
    bad(path, "file ended while reading ", what, " (did it change while being read?)");
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  std::error_code ec;
  uint64_t file_size = std::filesystem::file_size(path, ec);  // also rejects directories
  if (ec) bad(path, "cannot read: ", ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) bad(path, "cannot open: ", std::strerror(errno));
  if (file_size < 8)
    bad(path, "file is ", file_size, " bytes, too short for the 8-byte header length");

  unsigned char len[8];
  read_exact(in, len, 8, path, "the header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  if (n > kMaxHeaderBytes)
    bad(path, "header length ", n, " is absurd (limit ", kMaxHeaderBytes,
        " bytes); not a safetensors file?");
  if (n > file_size - 8)
    bad(path, "header length ", n, " is larger than the rest of the file (", file_size - 8,
        " bytes); truncated file?");
  std::string text(n, '\0');
  read_exact(in, text.data(), n, path, "the header");
  const uint64_t buffer_size = file_size - 8 - n;

  json header = parse_header(path, text);
  if (!header.is_object()) bad(path, "header JSON is not an object (got ", header.type_name(), ")");

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& [name, v] : header.items()) {
    if (name != "__metadata__") {
      entries.push_back(parse_entry(path, name, v, buffer_size));
      continue;
    }
    if (!v.is_object()) bad(path, "__metadata__ must be an object, got ", brief(v));
    for (const auto& [k, s] : v.items()) {
      if (!s.is_string())
        bad(path, "__metadata__ value for ", quote(k), " must be a string, got ", brief(s));
      out.metadata[k] = s.get<std::string>();
    }
  }

  // Like the reference implementation, the tensors must tile the buffer exactly:
  // an overlap would alias two tensors, and a gap or trailing bytes mean the
  // header and the data disagree.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  uint64_t expected = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    if (e.begin < expected)
      bad(path, "tensor ", quote(e.name), " [", e.begin, ", ", e.end, ") overlaps tensor ",
          quote(prev->name), " [", prev->begin, ", ", prev->end, ")");
    if (e.begin > expected)
      bad(path, "bytes [", expected, ", ", e.begin, ") of the data buffer before tensor ",
          quote(e.name), " belong to no tensor (gap)");
    expected = e.end;
    prev = &e;
  }
  if (expected != buffer_size)
    bad(path, "data buffer is ", buffer_size, " bytes but the tensors cover ", expected,
        " (trailing bytes after the last tensor)");

  // Only now, with every size checked against the file's, allocate and read.
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    read_exact(in, t.host_raw_data(), e.end - e.begin, path, "tensor " + quote(e.name));
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

namespace {

// Copies t's elements in row-major order as raw bytes. Unlike contiguous(),
// which converts bf16/f16 through double, this is bit-exact for every value.
std::vector<char> gather_bytes(const Tensor& t) {
  const size_t es = dtype_size(t.dtype());
  std::vector<char> out(t.nbytes());
  const char* base = static_cast<const char*>(t.host_raw_data());
  const int64_t nd = t.dim(), n = t.numel();
  Shape idx(nd, 0);
  int64_t off = 0;  // element offset of idx, updated like an odometer
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out.data() + i * es, base + off * static_cast<int64_t>(es), es);
    for (int64_t d = nd - 1; d >= 0; --d) {
      if (++idx[d] < t.shape()[d]) {
        off += t.strides()[d];
        break;
      }
      off -= (t.shape()[d] - 1) * t.strides()[d];
      idx[d] = 0;
    }
  }
  return out;
}

}  // namespace

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  auto fail = [&](const auto&... args) {
    throw Error(str_cat("save_safetensors: '", path, "': ", args...));
  };
  // ordered_json keeps insertion order, which we choose to match the reference
  // writer byte for byte: "__metadata__" first, then tensors by name (std::map
  // order), each as dtype, shape, data_offsets.
  using ojson = nlohmann::ordered_json;
  // transformers' from_pretrained refuses a file whose metadata has no
  // "format" in pt/tf/flax/mlx ("does not contain the valid metadata");
  // save_pretrained writes {"format": "pt"}. So does every file written here.
  auto given = metadata.find("format");
  if (given != metadata.end() && given->second != "pt")
    fail("metadata \"format\" is \"", given->second,
         "\"; every file is written with \"format\": \"pt\" (what transformers loads): "
         "use another key");
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";
  ojson header = ojson::object();
  header["__metadata__"] = meta;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") fail("\"__metadata__\" is reserved and cannot name a tensor");
    if (!t.defined()) fail("tensor ", quote(name), " is undefined");
    if (t.device() != Device::CPU)
      fail("tensor ", quote(name), " is on ", device_name(t.device()),
           "; copy it to the CPU first");
    ojson e = ojson::object();
    e["dtype"] = file_dtype_name(t.dtype());
    e["shape"] = t.shape();
    e["data_offsets"] = ojson::array({offset, offset + t.nbytes()});
    header[name] = std::move(e);
    offset += t.nbytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& err) {
    fail("tensor names and metadata must be valid UTF-8: ", err.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // 8-byte aligned data, as the reference pads
  if (text.size() > kMaxHeaderBytes)
    fail("header of ", text.size(), " bytes exceeds the format's limit of ", kMaxHeaderBytes);

  AtomicFile f(path, str_cat("save_safetensors: '", path, "': "));
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t{text.size()} >> (8 * i));
  f.write(len, 8);
  f.write(text.data(), text.size());
  for (const auto& [name, t] : tensors) {
    if (t.is_contiguous()) {
      f.write(t.host_raw_data(), t.nbytes());
    } else {
      std::vector<char> bytes = gather_bytes(t);
      f.write(bytes.data(), bytes.size());
    }
  }
  f.commit();
}

}  // namespace ms
