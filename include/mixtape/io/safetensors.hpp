/// @file safetensors.hpp
/// @brief safetensors files (Hugging Face's format): an 8-byte little-endian header length, a JSON
///        header mapping each name to {dtype, shape, data_offsets} plus an optional
///        `__metadata__` string map, then the raw little-endian data. Written to a temporary file
///        and renamed, so a crash never leaves a half-written file under the final name; read with
///        every offset, size and dtype checked.
///
/// dtype strings: F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, U16, I8, U8 (the format's own),
/// mapped to mixtape's DType. A malformed file is a ValueError naming the file and what is wrong.
///
/// @code
///   io::SafetensorsWriter w;
///   w.add("wte.weight", DType::f32, {256, 128}, bytes);
///   w.metadata("step", "800");
///   w.write("ckpt/model.safetensors");
///   io::SafetensorsFile f = io::SafetensorsFile::read("ckpt/model.safetensors");
///   const auto& t = f.at("wte.weight");   // t.dtype, t.shape, t.data
/// @endcode
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "mixtape/core/dtype.hpp"
#include "mixtape/core/error.hpp"
#include "mixtape/core/layout.hpp"

namespace mixtape::io {

namespace detail {

inline const char* safetensors_dtype(DType d) {
  switch (d) {
    case DType::f64: return "F64";
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::e4m3: return "F8_E4M3";
    case DType::e5m2: return "F8_E5M2";
    case DType::i64: return "I64";
    case DType::i32: return "I32";
    case DType::i16: return "I16";
    case DType::u16: return "U16";
    case DType::i8: return "I8";
    case DType::u8: return "U8";
    default: MIXTAPE_THROW(DTypeError, "safetensors: no dtype string for ", d);
  }
}

inline DType dtype_from_safetensors(const std::string& s, const std::string& file, const std::string& name) {
  for (DType d : {DType::f64, DType::f32, DType::f16, DType::bf16, DType::e4m3, DType::e5m2, DType::i64, DType::i32,
                  DType::i16, DType::u16, DType::i8, DType::u8})
    if (s == safetensors_dtype(d)) return d;
  MIXTAPE_THROW(ValueError, "safetensors '", file, "': tensor '", name, "' has dtype '", s,
                "', expected one of F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, U16, I8, U8");
}

inline std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
      continue;
    }
    out += c;
  }
  return out;
}

/// A parser for the subset of JSON a safetensors header uses: objects, arrays, strings (with
/// escapes), non-negative integers. Anything else is a ValueError.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& file) : s_(text), file_(file) {}

  struct Value {
    enum class Kind { string, integer, array, object } kind;
    std::string str;
    std::uint64_t integer = 0;
    std::vector<Value> items;                               // array
    std::vector<std::pair<std::string, Value>> members;     // object
    const Value* get(const std::string& key) const {
      for (const auto& [k, v] : members)
        if (k == key) return &v;
      return nullptr;
    }
  };

  Value parse() {
    Value v = value();
    ws();
    expect(i_ == s_.size(), "trailing characters after the header object");
    return v;
  }

 private:
  void expect(bool ok, const char* what) const {
    MIXTAPE_EXPECT(ok, ValueError, "safetensors '", file_, "': malformed header: ", what, " (at byte ", i_, ")");
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  char peek() {
    ws();
    expect(i_ < s_.size(), "unexpected end");
    return s_[i_];
  }
  Value value() {
    const char c = peek();
    if (c == '{') return object();
    if (c == '[') return array();
    if (c == '"') return Value{Value::Kind::string, string(), 0, {}, {}};
    expect(c >= '0' && c <= '9', "expected a value");
    std::uint64_t n = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      expect(n <= (UINT64_MAX - 9) / 10, "integer too large");
      n = n * 10 + static_cast<std::uint64_t>(s_[i_++] - '0');
    }
    return Value{Value::Kind::integer, {}, n, {}, {}};
  }
  std::string string() {
    expect(peek() == '"', "expected a string");
    ++i_;
    std::string out;
    while (true) {
      expect(i_ < s_.size(), "unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      expect(i_ < s_.size(), "unterminated escape");
      const char e = s_[i_++];
      if (e == 'u') {
        expect(i_ + 4 <= s_.size(), "short \\u escape");
        const unsigned long cp = std::strtoul(s_.substr(i_, 4).c_str(), nullptr, 16);
        i_ += 4;
        expect(cp < 0x80, "non-ASCII \\u escape");
        out += static_cast<char>(cp);
      } else {
        const char* from = "\"\\/bfnrt";
        const char* to = "\"\\/\b\f\n\r\t";
        const char* p = std::strchr(from, e);
        expect(p != nullptr && e != '\0', "bad escape");
        out += to[p - from];
      }
    }
  }
  Value array() {
    ++i_;
    Value v{Value::Kind::array, {}, 0, {}, {}};
    if (peek() == ']') return ++i_, v;
    while (true) {
      v.items.push_back(value());
      const char c = peek();
      ++i_;
      if (c == ']') return v;
      expect(c == ',', "expected ',' or ']'");
    }
  }
  Value object() {
    ++i_;
    Value v{Value::Kind::object, {}, 0, {}, {}};
    if (peek() == '}') return ++i_, v;
    while (true) {
      std::string key = string();
      expect(peek() == ':', "expected ':'");
      ++i_;
      v.members.emplace_back(std::move(key), value());
      const char c = peek();
      ++i_;
      if (c == '}') return v;
      expect(c == ',', "expected ',' or '}'");
    }
  }

  const std::string& s_;
  const std::string& file_;
  std::size_t i_ = 0;
};

}  // namespace detail

/// Collects tensors and metadata, then writes one file atomically.
class SafetensorsWriter {
 public:
  /// Adds a tensor: `bytes` must hold exactly numel(shape) elements of `dtype`.
  /// @throws ValueError for a repeated name or a wrong byte count
  void add(const std::string& name, DType dtype, const Shape& shape, std::span<const std::byte> bytes) {
    for (const auto& e : entries_)
      MIXTAPE_EXPECT(e.name != name, ValueError, "safetensors: tensor '", name, "' added twice");
    const std::int64_t expected = storage_bytes(dtype, shape.numel());
    MIXTAPE_EXPECT(static_cast<std::int64_t>(bytes.size()) == expected, ValueError, "safetensors: tensor '", name,
                   "' of shape ", shape, " in ", dtype, " needs ", expected, " bytes, got ", bytes.size());
    entries_.push_back({name, dtype, shape, std::vector<std::byte>(bytes.begin(), bytes.end())});
  }
  void metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  /// Writes `path.tmp`, flushes it, then renames it to `path` (POSIX rename replaces atomically).
  /// @throws ValueError when the file cannot be written
  void write(const std::string& path) const {
    std::string header = "{";
    if (!metadata_.empty()) {
      header += "\"__metadata__\":{";
      bool first = true;
      for (const auto& [k, v] : metadata_) {
        header += (first ? "\"" : ",\"") + detail::json_escape(k) + "\":\"" + detail::json_escape(v) + "\"";
        first = false;
      }
      header += "}";
    }
    std::uint64_t offset = 0;
    for (const auto& e : entries_) {
      if (header.size() > 1) header += ",";
      header += "\"" + detail::json_escape(e.name) + "\":{\"dtype\":\"" + detail::safetensors_dtype(e.dtype) +
                "\",\"shape\":[";
      for (int d = 0; d < e.shape.rank(); ++d) header += (d ? "," : "") + std::to_string(e.shape[d]);
      header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e.data.size()) + "]}";
      offset += e.data.size();
    }
    header += "}";
    while (header.size() % 8 != 0) header += ' ';  // the data starts 8-byte aligned
    const std::string tmp = path + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    MIXTAPE_EXPECT(f != nullptr, ValueError, "safetensors: cannot create '", tmp, "' (", std::strerror(errno), ")");
    const std::uint64_t n = header.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(header.data(), 1, header.size(), f) == header.size();
    for (const auto& e : entries_) ok = ok && std::fwrite(e.data.data(), 1, e.data.size(), f) == e.data.size();
    ok = std::fflush(f) == 0 && ok;
    ok = std::fclose(f) == 0 && ok;
    if (!ok) std::remove(tmp.c_str());
    MIXTAPE_EXPECT(ok, ValueError, "safetensors: writing '", tmp, "' failed; '", path, "' is unchanged");
    MIXTAPE_EXPECT(std::rename(tmp.c_str(), path.c_str()) == 0, ValueError, "safetensors: cannot rename '", tmp,
                   "' to '", path, "' (", std::strerror(errno), ")");
  }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    std::vector<std::byte> data;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

/// A safetensors file read into memory, every entry checked.
class SafetensorsFile {
 public:
  struct Tensor {
    DType dtype;
    Shape shape;
    std::span<const std::byte> data;
  };

  /// @throws ValueError for a missing, truncated or malformed file, naming it and the problem
  static SafetensorsFile read(const std::string& path) {
    SafetensorsFile f;
    f.path_ = path;
    std::FILE* fp = std::fopen(path.c_str(), "rb");
    MIXTAPE_EXPECT(fp != nullptr, ValueError, "safetensors '", path, "': cannot open it (", std::strerror(errno), ")");
    unsigned char buf[1 << 16];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, fp)) > 0;)
      f.bytes_.insert(f.bytes_.end(), reinterpret_cast<std::byte*>(buf), reinterpret_cast<std::byte*>(buf) + n);
    std::fclose(fp);
    MIXTAPE_EXPECT(f.bytes_.size() >= 8, ValueError, "safetensors '", path, "': expected an 8-byte header length, got ",
                   f.bytes_.size(), " bytes");
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(f.bytes_[static_cast<std::size_t>(i)]) << (8 * i);
    MIXTAPE_EXPECT(n <= f.bytes_.size() - 8, ValueError, "safetensors '", path, "': the header length ", n,
                   " runs past the end of the file (", f.bytes_.size(), " bytes): truncated or not safetensors");
    const std::string header(reinterpret_cast<const char*>(f.bytes_.data()) + 8, n);
    const auto root = detail::HeaderParser(header, path).parse();
    MIXTAPE_EXPECT(root.kind == detail::HeaderParser::Value::Kind::object, ValueError, "safetensors '", path,
                   "': the header is not a JSON object");
    const std::uint64_t data_size = f.bytes_.size() - 8 - n;
    std::uint64_t covered = 0;
    for (const auto& [name, v] : root.members) {
      using K = detail::HeaderParser::Value::Kind;
      if (name == "__metadata__") {
        MIXTAPE_EXPECT(v.kind == K::object, ValueError, "safetensors '", path, "': __metadata__ is not an object");
        for (const auto& [k, m] : v.members) {
          MIXTAPE_EXPECT(m.kind == K::string, ValueError, "safetensors '", path, "': metadata '", k, "' is not a string");
          f.metadata_[k] = m.str;
        }
        continue;
      }
      const auto* dt = v.get("dtype");
      const auto* sh = v.get("shape");
      const auto* off = v.get("data_offsets");
      MIXTAPE_EXPECT(v.kind == K::object && dt && dt->kind == K::string && sh && sh->kind == K::array && off &&
                         off->kind == K::array && off->items.size() == 2,
                     ValueError, "safetensors '", path, "': tensor '", name,
                     "' needs a dtype string, a shape array and two data_offsets");
      Tensor t;
      t.dtype = detail::dtype_from_safetensors(dt->str, path, name);
      std::vector<std::int64_t> extents;
      for (const auto& e : sh->items) {
        MIXTAPE_EXPECT(e.kind == K::integer && e.integer < (1ull << 62), ValueError, "safetensors '", path,
                       "': tensor '", name, "' has a bad shape entry");
        extents.push_back(static_cast<std::int64_t>(e.integer));
      }
      t.shape = Shape(std::span<const std::int64_t>(extents));
      const std::uint64_t b = off->items[0].integer, e = off->items[1].integer;
      MIXTAPE_EXPECT(off->items[0].kind == K::integer && off->items[1].kind == K::integer && b <= e && e <= data_size,
                     ValueError, "safetensors '", path, "': tensor '", name, "' has data_offsets [", b, ", ", e,
                     "] outside the ", data_size, " data bytes (truncated?)");
      const auto expected = static_cast<std::uint64_t>(storage_bytes(t.dtype, t.shape.numel()));
      MIXTAPE_EXPECT(e - b == expected, ValueError, "safetensors '", path, "': tensor '", name, "' of shape ", t.shape,
                     " in ", t.dtype, " needs ", expected, " bytes, its offsets span ", e - b);
      t.data = std::span<const std::byte>(f.bytes_.data() + 8 + n + b, e - b);
      covered += e - b;
      f.tensors_.emplace(name, t);
    }
    MIXTAPE_EXPECT(covered == data_size, ValueError, "safetensors '", path, "': the tensors cover ", covered, " of ",
                   data_size, " data bytes");
    return f;
  }

  const std::string& path() const noexcept { return path_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  /// @throws ValueError naming the file and the missing tensor
  const Tensor& at(const std::string& name) const {
    auto it = tensors_.find(name);
    MIXTAPE_EXPECT(it != tensors_.end(), ValueError, "safetensors '", path_, "': no tensor named '", name, "'");
    return it->second;
  }
  const std::map<std::string, Tensor>& tensors() const noexcept { return tensors_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  /// @throws ValueError naming the file and the missing key
  const std::string& metadata(const std::string& key) const {
    auto it = metadata_.find(key);
    MIXTAPE_EXPECT(it != metadata_.end(), ValueError, "safetensors '", path_, "': no metadata '", key, "'");
    return it->second;
  }

 private:
  std::string path_;
  std::vector<std::byte> bytes_;
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace mixtape::io
