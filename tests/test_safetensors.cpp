// safetensors: round trips of every dtype, the exact bytes of a tiny file, and
// one test per kind of malformed or hostile file (each must be a clear ms::Error).
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "autograd/ops.h"
#include "catch_compat.h"
#include "nn/gpt.h"
#include "nn/safetensors.h"
#include "tests/temp_dir.h"

using namespace ms;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s;
}

// A file with the given header JSON (unpadded) followed by `data_bytes` zero bytes.
std::string hostile(const TempDir& tmp, const std::string& header, size_t data_bytes) {
  std::string path = tmp.file("hostile.safetensors");
  write_bytes(path, le64(header.size()) + header + std::string(data_bytes, '\0'));
  return path;
}

// The header for a single tensor "w" with the given entry body.
std::string one(const std::string& entry) {
  return R"({"w":{)" + entry + "}}";
}

Tensor from_bits(const std::vector<uint16_t>& bits, DType dtype) {
  Tensor t = Tensor::empty({static_cast<int64_t>(bits.size())}, dtype);
  std::memcpy(t.host_raw_data(), bits.data(), t.nbytes());
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  Tensor ca = contiguous(a), cb = contiguous(b);
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(ca.host_raw_data(), cb.host_raw_data(), ca.nbytes()) == 0;
}

}  // namespace

TEST_CASE("safetensors round-trips every dtype bit for bit", "[safetensors]") {
  TempDir tmp;
  Generator gen(7);
  const float inf = std::numeric_limits<float>::infinity();
  // Special bf16/f16 patterns: ±0, ±inf, quiet and signaling NaNs with payloads, subnormals.
  std::vector<uint16_t> bf16_bits = {0x0000, 0x8000, 0x3F80, 0x7F80, 0xFF80,
                                     0x7FC1, 0x7F81, 0x0001, 0xC0A0};
  std::vector<uint16_t> f16_bits = {0x0000, 0x8000, 0x3C00, 0x7C00, 0xFC00,
                                    0x7E01, 0x7C01, 0x0001, 0x03FF};
  std::map<std::string, Tensor> in = {
      {"f32", from_vector(std::vector<float>{1.5f, -0.0f, inf, 1e-45f, 3.14159f, -7.0f}, {2, 3})},
      {"f64", randn({3, 1, 2}, gen, 0, 1, DType::F64)},
      {"bf16", from_bits(bf16_bits, DType::BF16)},
      {"f16", reshape(from_bits(f16_bits, DType::F16), {3, 3})},
      {"i32", from_vector(std::vector<int32_t>{std::numeric_limits<int32_t>::min(), -1, 0, 42,
                                               std::numeric_limits<int32_t>::max()},
                          {5})},
      {"scalar", full({}, 2.5)},
      {"empty", zeros({0, 4}, DType::BF16)},
  };
  std::string path = tmp.file("all.safetensors");
  save_safetensors(path, in);
  SafetensorsFile out = load_safetensors(path);
  REQUIRE(out.tensors.size() == in.size());
  CHECK(out.metadata == std::map<std::string, std::string>{{"format", "pt"}});
  for (const auto& [name, t] : in) {
    INFO(name);
    REQUIRE(out.tensors.count(name) == 1);
    CHECK(same_bytes(out.tensors.at(name), t));
  }
  // Saving what we loaded reproduces the file exactly.
  save_safetensors(tmp.file("again.safetensors"), out.tensors);
  CHECK(read_bytes(tmp.file("again.safetensors")) == read_bytes(path));
}

TEST_CASE("safetensors round-trips metadata", "[safetensors]") {
  TempDir tmp;
  std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"step", "1200"}, {"empty", ""}, {"note", "größe \"quoted\" \\ \n"}};
  std::string path = tmp.file("meta.safetensors");
  save_safetensors(path, {{"x", ones({2})}}, meta);
  SafetensorsFile out = load_safetensors(path);
  CHECK(out.metadata == meta);
  CHECK(out.tensors.at("x").to_vector() == std::vector<double>{1, 1});
  // No metadata given: still "format": "pt", which transformers requires.
  save_safetensors(path, {{"x", ones({2})}});
  CHECK(load_safetensors(path).metadata == std::map<std::string, std::string>{{"format", "pt"}});
}

// Regression: GPT files carried n_layer etc. but no "format", and checkpoints
// "format": "minispeed-checkpoint"; transformers' from_pretrained refuses
// both (metadata.get("format") not in pt/tf/flax/mlx). No python here, so the
// bytes are checked: the header JSON's __metadata__ holds "format":"pt".
TEST_CASE("safetensors: every file says \"format\": \"pt\", as transformers requires",
          "[safetensors]") {
  TempDir tmp;
  const std::string path = tmp.file("gpt.safetensors");
  GPTConfig cfg;
  cfg.n_layer = 1, cfg.n_head = 2, cfg.n_embd = 16, cfg.block_size = 8, cfg.vocab_size = 32;
  GPT(cfg, 1).save_safetensors(path);
  const std::string bytes = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(bytes[i]);
  const std::string header = bytes.substr(8, n);
  CHECK(header.rfind(R"({"__metadata__":{"block_size":"8","format":"pt","n_embd":"16",)", 0) == 0);
  // A caller's other "format" is refused, naming it.
  CHECK_THROWS_WITH(save_safetensors(path, {{"x", ones({2})}}, {{"format", "np"}}),
                    Contains("metadata \"format\" is \"np\"") && Contains("use another key"));
}

TEST_CASE("safetensors saves non-contiguous tensors in row-major order", "[safetensors]") {
  TempDir tmp;
  Tensor base = reshape(arange(12), {3, 4});
  Tensor t = transpose(base, 0, 1);                      // [4, 3], strides [1, 4]
  Tensor cols = narrow(to(base, DType::BF16), 1, 1, 2);  // [3, 2] with offset 1
  Tensor bcast = expand(from_vector(std::vector<int32_t>{7, 8}, {2, 1}), {2, 3});  // stride 0
  REQUIRE(!t.is_contiguous());
  REQUIRE(!cols.is_contiguous());
  std::string path = tmp.file("views.safetensors");
  save_safetensors(path, {{"t", t}, {"cols", cols}, {"bcast", bcast}});
  SafetensorsFile out = load_safetensors(path);
  CHECK(out.tensors.at("t").shape() == Shape{4, 3});
  CHECK(out.tensors.at("t").to_vector() == t.to_vector());
  CHECK(out.tensors.at("t").to_vector()[1] == 4.0);
  CHECK(same_bytes(out.tensors.at("cols"), cols));
  CHECK(out.tensors.at("bcast").to_vector() == std::vector<double>{7, 7, 7, 8, 8, 8});
}

TEST_CASE("safetensors writes exactly the bytes the spec describes", "[safetensors]") {
  TempDir tmp;
  // 85 bytes of JSON, padded with 3 spaces to 88; then 1.0f and -2.0f
  // little-endian. "format": "pt" is always there (transformers requires it).
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  REQUIRE(json.size() == 85);
  const std::string expected = std::string("\x58\0\0\0\0\0\0\0", 8) + json + "   " +
                               std::string("\x00\x00\x80\x3F\x00\x00\x00\xC0", 8);
  std::string path = tmp.file("tiny.safetensors");
  save_safetensors(path, {{"a", from_vector(std::vector<float>{1.0f, -2.0f}, {2})}});
  CHECK(read_bytes(path) == expected);

  // With metadata, it comes first, and a hand-written file (no padding) reads back.
  save_safetensors(path, {{"a", from_vector(std::vector<float>{1.0f, -2.0f}, {2})}}, {{"k", "v"}});
  std::string bytes = read_bytes(path);
  CHECK(bytes.substr(8, 40) == R"({"__metadata__":{"format":"pt","k":"v"},)");
  CHECK(bytes.size() % 8 == 0);
  const std::string hand = R"({"b":{"dtype":"I32","shape":[1,1],"data_offsets":[0,4]}})";
  write_bytes(path, le64(hand.size()) + hand + std::string("\x05\x00\x00\x00", 4));
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.tensors.at("b").shape() == Shape{1, 1});
  CHECK(f.tensors.at("b").host_data<int32_t>()[0] == 5);
}

TEST_CASE("safetensors saves atomically and reports unwritable paths", "[safetensors]") {
  TempDir tmp;
  std::string path = tmp.file("ckpt.safetensors");
  save_safetensors(path, {{"x", ones({3})}});
  save_safetensors(path, {{"x", zeros({2})}});  // overwrite in place
  CHECK(load_safetensors(path).tensors.at("x").shape() == Shape{2});
  CHECK(std::distance(fs::directory_iterator(tmp.dir), fs::directory_iterator()) ==
        1);  // no temp left

  std::string missing_dir = tmp.file("no/such/dir/x.safetensors");
  CHECK_THROWS_WITH(save_safetensors(missing_dir, {{"x", ones({1})}}),
                    Catch::Contains("cannot create") && Catch::Contains(missing_dir));
  fs::create_directory(tmp.file("adir"));  // a directory is never replaced
  CHECK_THROWS_WITH(save_safetensors(tmp.file("adir"), {{"x", ones({1})}}),
                    Catch::Contains("is a directory") && Catch::Contains("adir"));
  CHECK(std::distance(fs::directory_iterator(tmp.dir), fs::directory_iterator()) == 2);
  CHECK_THROWS_WITH(save_safetensors(path, {{"__metadata__", ones({1})}}),
                    Catch::Contains("reserved"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"u", Tensor()}}), Catch::Contains("'u' is undefined"));
  CHECK_THROWS_WITH(save_safetensors(path, {{"\xff", ones({1})}}), Catch::Contains("UTF-8"));
}

// ---- hostile files: each must name the file and the problem ----

TEST_CASE("safetensors: missing file", "[safetensors]") {
  TempDir tmp;
  std::string path = tmp.file("nope.safetensors");
  CHECK_THROWS_WITH(load_safetensors(path),
                    Catch::Contains(path) && Catch::Contains("No such file"));
  CHECK_THROWS_WITH(load_safetensors(tmp.dir.string()), Catch::Contains("directory"));
}

TEST_CASE("safetensors: file shorter than the header length", "[safetensors]") {
  TempDir tmp;
  std::string path = tmp.file("short.safetensors");
  write_bytes(path, std::string("\x02\0\0", 3));
  CHECK_THROWS_WITH(load_safetensors(path), Catch::Contains(path) && Catch::Contains("too short"));
}

TEST_CASE("safetensors: header length beyond the file or absurd", "[safetensors]") {
  TempDir tmp;
  std::string path = tmp.file("len.safetensors");
  write_bytes(path, le64(100) + "{}");
  CHECK_THROWS_WITH(load_safetensors(path),
                    Catch::Contains(path) && Catch::Contains("larger than the rest"));
  write_bytes(path, le64(std::numeric_limits<uint64_t>::max()) + "{}");
  CHECK_THROWS_WITH(load_safetensors(path), Catch::Contains("absurd"));
  write_bytes(path, le64(100'000'001) + "{}");
  CHECK_THROWS_WITH(load_safetensors(path), Catch::Contains("absurd"));
}

TEST_CASE("safetensors: invalid JSON", "[safetensors]") {
  TempDir tmp;
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, R"({"w": {"dtype": )", 0)),
                    Catch::Contains("hostile.safetensors") && Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, "{\"\xff\":1}", 0)),
                    Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, "", 0)), Catch::Contains("not valid JSON"));
  // Deep nesting is cut off early instead of building millions of values.
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, std::string(1'000'000, '['), 0)),
                    Catch::Contains("nested"));
}

TEST_CASE("safetensors: JSON that is not an object", "[safetensors]") {
  TempDir tmp;
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, "[1, 2]", 0)), Catch::Contains("not an object"));
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, R"({"w": 3})", 0)),
                    Catch::Contains("'w'") && Catch::Contains("must be an object"));
}

TEST_CASE("safetensors: entry missing a field or with the wrong types", "[safetensors]") {
  TempDir tmp;
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, one(R"("shape":[1],"data_offsets":[0,4])"), 4)),
                    Catch::Contains("'w'") && Catch::Contains("missing \"dtype\""));
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, one(R"("dtype":"F32","data_offsets":[0,4])"), 4)),
                    Catch::Contains("missing \"shape\""));
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, one(R"("dtype":"F32","shape":[1])"), 4)),
                    Catch::Contains("missing \"data_offsets\""));
  CHECK_THROWS_WITH(
      load_safetensors(hostile(tmp, one(R"("dtype":4,"shape":[1],"data_offsets":[0,4])"), 4)),
      Catch::Contains("dtype must be a string"));
  CHECK_THROWS_WITH(
      load_safetensors(hostile(tmp, one(R"("dtype":"F32","shape":1,"data_offsets":[0,4])"), 4)),
      Catch::Contains("shape must be an array"));
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, R"({"__metadata__":{"k":1}})", 0)),
                    Catch::Contains("__metadata__ value for 'k' must be a string"));
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, R"({"__metadata__":[]})", 0)),
                    Catch::Contains("__metadata__ must be an object"));
}

TEST_CASE("safetensors: unknown dtype", "[safetensors]") {
  TempDir tmp;
  CHECK_THROWS_WITH(
      load_safetensors(hostile(tmp, one(R"("dtype":"I64","shape":[1],"data_offsets":[0,8])"), 8)),
      Catch::Contains("unsupported dtype \"I64\"") &&
          Catch::Contains("supported: F32, F64, BF16, F16, I32"));
}

TEST_CASE("safetensors: negative or non-integer shape dims", "[safetensors]") {
  TempDir tmp;
  CHECK_THROWS_WITH(
      load_safetensors(hostile(tmp, one(R"("dtype":"F32","shape":[-1],"data_offsets":[0,4])"), 4)),
      Catch::Contains("shape dimension -1 is negative"));
  CHECK_THROWS_WITH(
      load_safetensors(hostile(tmp, one(R"("dtype":"F32","shape":[1.5],"data_offsets":[0,4])"), 4)),
      Catch::Contains("shape dimension 1.5 is not an integer"));
  CHECK_THROWS_WITH(
      load_safetensors(hostile(tmp, one(R"("dtype":"F32","shape":["2"],"data_offsets":[0,8])"), 8)),
      Catch::Contains("is not an integer"));
}

TEST_CASE("safetensors: shape product overflow", "[safetensors]") {
  TempDir tmp;
  const char* shapes[] = {"[4294967296,4294967296]", "[18446744073709551615]",
                          "[0,4611686018427387904,4]",
                          "[4611686018427387904]" /* fits in int64, but not times 4 bytes */};
  for (const char* s : shapes) {
    INFO(s);
    std::string e = std::string(R"("dtype":"F32","shape":)") + s + R"(,"data_offsets":[0,0])";
    CHECK_THROWS_WITH(load_safetensors(hostile(tmp, one(e), 0)), Catch::Contains("overflows"));
  }
}

TEST_CASE("safetensors: absurd rank is rejected while parsing", "[safetensors]") {
  TempDir tmp;
  auto ones_shape = [](int rank) {
    std::string s = "[1";
    for (int i = 1; i < rank; ++i) s += ",1";
    return s + "]";
  };
  std::string ok =
      std::string(R"("dtype":"F32","shape":)") + ones_shape(64) + R"(,"data_offsets":[0,4])";
  CHECK(load_safetensors(hostile(tmp, one(ok), 4)).tensors.at("w").dim() == 64);
  std::string big =
      std::string(R"("dtype":"F32","shape":)") + ones_shape(1'000'000) + R"(,"data_offsets":[0,4])";
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, one(big), 4)),
                    Catch::Contains("array longer than 64"));
}

TEST_CASE("safetensors: malformed data_offsets", "[safetensors]") {
  TempDir tmp;
  for (const char* off : {"[0]", "[0,4,8]", "0", "[-4,0]", "[0,\"4\"]", "[0,4.0]"}) {
    INFO(off);
    std::string e = std::string(R"("dtype":"F32","shape":[1],"data_offsets":)") + off;
    CHECK_THROWS_WITH(load_safetensors(hostile(tmp, one(e), 4)),
                      Catch::Contains("must be [begin, end]"));
  }
  CHECK_THROWS_WITH(
      load_safetensors(hostile(tmp, one(R"("dtype":"F32","shape":[1],"data_offsets":[4,0])"), 4)),
      Catch::Contains("begin > end"));
}

TEST_CASE("safetensors: data_offsets end beyond the buffer (truncated file)", "[safetensors]") {
  TempDir tmp;
  CHECK_THROWS_WITH(
      load_safetensors(hostile(tmp, one(R"("dtype":"F32","shape":[4],"data_offsets":[0,16])"), 15)),
      Catch::Contains("end beyond the data buffer (15 bytes"));
  // A real file cut short by one byte.
  std::string path = tmp.file("cut.safetensors");
  save_safetensors(path, {{"x", ones({4})}});
  std::string bytes = read_bytes(path);
  write_bytes(path, bytes.substr(0, bytes.size() - 1));
  CHECK_THROWS_WITH(load_safetensors(path),
                    Catch::Contains("'x'") && Catch::Contains("beyond the data buffer"));
}

TEST_CASE("safetensors: byte length that disagrees with the shape", "[safetensors]") {
  TempDir tmp;
  CHECK_THROWS_WITH(
      load_safetensors(hostile(tmp, one(R"("dtype":"F32","shape":[3],"data_offsets":[0,8])"), 8)),
      Catch::Contains("span 8 bytes") && Catch::Contains("needs 12"));
}

TEST_CASE("safetensors: overlapping tensors, gaps and trailing bytes", "[safetensors]") {
  TempDir tmp;
  std::string overlap = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, overlap, 12)),
                    Catch::Contains("'b' [4, 12) overlaps tensor 'a' [0, 8)"));
  std::string alias = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK_THROWS_WITH(load_safetensors(hostile(tmp, alias, 8)), Catch::Contains("overlaps"));
  CHECK_THROWS_WITH(
      load_safetensors(hostile(tmp, one(R"("dtype":"F32","shape":[1],"data_offsets":[4,8])"), 8)),
      Catch::Contains("gap"));
  CHECK_THROWS_WITH(
      load_safetensors(hostile(tmp, one(R"("dtype":"F32","shape":[1],"data_offsets":[0,4])"), 6)),
      Catch::Contains("trailing bytes"));
  // Empty tensors take no bytes and may sit anywhere, including beside others.
  std::string empties = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                        R"("e":{"dtype":"F16","shape":[0,3],"data_offsets":[4,4]},)"
                        R"("z":{"dtype":"I32","shape":[0],"data_offsets":[0,0]}})";
  SafetensorsFile f = load_safetensors(hostile(tmp, empties, 4));
  CHECK(f.tensors.at("e").shape() == Shape{0, 3});
  CHECK(f.tensors.at("z").numel() == 0);
}

TEST_CASE("safetensors: every truncation and byte corruption is an ms::Error", "[safetensors]") {
  TempDir tmp;
  std::string path = tmp.file("fuzz.safetensors");
  save_safetensors(path, {{"a", ones({2, 2})}, {"b", zeros({3}, DType::BF16)}}, {{"k", "v"}});
  const std::string good = read_bytes(path);
  auto loads_or_errors = [&](const std::string& bytes) {
    write_bytes(path, bytes);
    try {
      load_safetensors(path);
    } catch (const Error&) {  // anything but ms::Error (or a crash) fails the test
    }
  };
  for (size_t n = 0; n < good.size(); ++n) CHECK_NOTHROW(loads_or_errors(good.substr(0, n)));
  for (size_t i = 0; i < good.size(); ++i) {
    for (char c : {'\0', '\xff', '9', '-', '"', '{', ']'}) {
      std::string bad = good;
      bad[i] = c;
      CHECK_NOTHROW(loads_or_errors(bad));
    }
  }
}
