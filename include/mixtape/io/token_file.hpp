/// @file token_file.hpp
/// @brief Token datasets from files: llm.c's `.bin` shards (a 256-int32 header with magic 20240520,
///        version 1 and the token count, then uint16 tokens; several shards by glob) and plain text
///        files read as bytes (vocab 256), with a held-out validation split and sequential batches
///        whose position is one integer (checkpoints save it).
///
/// Every malformed input is a ValueError naming the file and what was expected: a missing file, an
/// empty glob, a bad magic or version, a file shorter or longer than its header says, a token at or
/// above the model's vocabulary (with its position), or too few tokens for one batch.
///
/// @code
///   io::TokenDataset data = io::TokenDataset::open("fineweb_train_*.bin", 50304, 65536);
///   io::TokenCursor cursor = data.train_cursor();
///   cursor.next_batch(16, 1024, inputs, targets);   // (B, T) each: a window of B*T+1 tokens
/// @endcode
#pragma once

#include <glob.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mixtape/core/error.hpp"

namespace mixtape::io {

/// llm.c's shard header: 256 int32 values, of which the first three are used.
inline constexpr std::int32_t kShardMagic = 20240520;
inline constexpr std::int32_t kShardVersion = 1;
inline constexpr std::int64_t kShardHeaderInts = 256;

namespace detail {

inline std::vector<unsigned char> read_bytes(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  MIXTAPE_EXPECT(f != nullptr, ValueError, "token file '", path, "': cannot open it (", std::strerror(errno), ")");
  std::vector<unsigned char> out;
  unsigned char buf[1 << 16];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.insert(out.end(), buf, buf + n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  MIXTAPE_EXPECT(!failed, ValueError, "token file '", path, "': read error");
  return out;
}

inline std::int32_t read_i32(const unsigned char* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);  // the format is little-endian, as every host mixtape runs on
  return v;
}

}  // namespace detail

/// The tokens of one llm.c shard, checked against `vocab`.
/// @throws ValueError for a malformed shard or a token >= vocab
inline std::vector<std::int32_t> read_shard(const std::string& path, std::int64_t vocab) {
  const std::vector<unsigned char> bytes = detail::read_bytes(path);
  constexpr std::int64_t kHeaderBytes = kShardHeaderInts * 4;
  MIXTAPE_EXPECT(static_cast<std::int64_t>(bytes.size()) >= kHeaderBytes, ValueError, "token file '", path,
                 "': expected a 1024-byte header, got a file of ", bytes.size(), " bytes");
  const std::int32_t magic = detail::read_i32(bytes.data()), version = detail::read_i32(bytes.data() + 4);
  const std::int64_t count = detail::read_i32(bytes.data() + 8);
  MIXTAPE_EXPECT(magic == kShardMagic, ValueError, "token file '", path, "': expected magic ", kShardMagic,
                 " (an llm.c .bin shard), got ", magic);
  MIXTAPE_EXPECT(version == kShardVersion, ValueError, "token file '", path, "': expected version ", kShardVersion,
                 " (uint16 tokens), got ", version);
  MIXTAPE_EXPECT(count >= 0, ValueError, "token file '", path, "': negative token count ", count, " in the header");
  const std::int64_t expected = kHeaderBytes + 2 * count;
  MIXTAPE_EXPECT(static_cast<std::int64_t>(bytes.size()) == expected, ValueError, "token file '", path,
                 "': the header says ", count, " tokens (", expected, " bytes), the file has ", bytes.size(),
                 " bytes", static_cast<std::int64_t>(bytes.size()) < expected ? " (truncated)" : "");
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    std::uint16_t t;
    std::memcpy(&t, bytes.data() + kHeaderBytes + 2 * i, 2);
    MIXTAPE_EXPECT(t < vocab, ValueError, "token file '", path, "': token ", t, " at position ", i,
                   " is outside the vocabulary of ", vocab);
    tokens[static_cast<std::size_t>(i)] = t;
  }
  return tokens;
}

/// Writes an llm.c shard (tests, and converting a corpus); to a temporary file, then renamed.
/// @throws ValueError for a token outside uint16 or a failed write
inline void write_shard(const std::string& path, const std::vector<std::int32_t>& tokens) {
  std::vector<std::int32_t> header(kShardHeaderInts, 0);
  header[0] = kShardMagic, header[1] = kShardVersion, header[2] = static_cast<std::int32_t>(tokens.size());
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  MIXTAPE_EXPECT(f != nullptr, ValueError, "write_shard: cannot create '", tmp, "'");
  bool ok = std::fwrite(header.data(), 4, header.size(), f) == header.size();
  for (std::int32_t t : tokens) {
    MIXTAPE_EXPECT(t >= 0 && t <= 65535, ValueError, "write_shard: token ", t, " does not fit uint16");
    const auto u = static_cast<std::uint16_t>(t);
    ok = ok && std::fwrite(&u, 2, 1, f) == 1;
  }
  ok = std::fclose(f) == 0 && ok;
  MIXTAPE_EXPECT(ok && std::rename(tmp.c_str(), path.c_str()) == 0, ValueError, "write_shard: writing '", path,
                 "' failed");
}

/// A position in a token sequence: batches are consecutive windows of B*T+1 tokens that overlap by
/// one (inputs the first B*T, targets shifted by one), wrapping to the start when too few remain.
class TokenCursor {
 public:
  TokenCursor(const std::vector<std::int32_t>* tokens, std::int64_t begin, std::int64_t end)
      : tokens_(tokens), begin_(begin), end_(end), position_(begin) {}

  /// Fills inputs and targets, (B, T) each, row-major.
  /// @throws ValueError when the span holds fewer than B*T+1 tokens
  void next_batch(std::int64_t batch, std::int64_t t, std::int32_t* inputs, std::int32_t* targets) {
    const std::int64_t n = batch * t;
    MIXTAPE_EXPECT(end_ - begin_ >= n + 1, ValueError, "token data: a batch of ", batch, " x ", t, " needs ", n + 1,
                   " tokens, the split has ", end_ - begin_);
    if (position_ + n + 1 > end_) position_ = begin_;
    const std::int32_t* p = tokens_->data() + position_;
    std::copy(p, p + n, inputs);
    std::copy(p + 1, p + n + 1, targets);
    position_ += n;
  }
  /// The next batch's first token (what a checkpoint saves).
  std::int64_t position() const noexcept { return position_; }
  /// Restores a saved position. @throws ValueError outside the split
  void set_position(std::int64_t p) {
    MIXTAPE_EXPECT(p >= begin_ && p < end_, ValueError, "token data: position ", p, " is outside the split [", begin_,
                   ", ", end_, ")");
    position_ = p;
  }

 private:
  const std::vector<std::int32_t>* tokens_;
  std::int64_t begin_, end_, position_;
};

/// Tokens of one or more files with a held-out validation split at the end.
class TokenDataset {
 public:
  /// Opens `pattern`: a glob of llm.c `.bin` shards (sorted by name) or one `.txt` file (bytes).
  /// The last `val_tokens` tokens (at least one is kept for training) form the validation split.
  /// @throws ValueError as described in the file comment
  static TokenDataset open(const std::string& pattern, std::int64_t vocab, std::int64_t val_tokens) {
    TokenDataset d;
    if (pattern.size() >= 4 && pattern.compare(pattern.size() - 4, 4, ".txt") == 0) {
      MIXTAPE_EXPECT(vocab >= 256, ValueError, "token data '", pattern, "': a text file's tokens are bytes, so the ",
                     "vocabulary must be at least 256, got ", vocab);
      for (unsigned char c : detail::read_bytes(pattern)) d.tokens_.push_back(c);
      d.files_.push_back(pattern);
    } else {
      glob_t g{};
      const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
      if (rc == 0)
        for (std::size_t i = 0; i < g.gl_pathc; ++i) d.files_.emplace_back(g.gl_pathv[i]);
      ::globfree(&g);
      MIXTAPE_EXPECT(!d.files_.empty(), ValueError, "token data: no file matches '", pattern,
                     "' (expected llm.c .bin shards or a .txt file)");
      std::sort(d.files_.begin(), d.files_.end());
      for (const auto& f : d.files_) {
        const auto t = read_shard(f, vocab);
        d.tokens_.insert(d.tokens_.end(), t.begin(), t.end());
      }
    }
    const auto n = static_cast<std::int64_t>(d.tokens_.size());
    MIXTAPE_EXPECT(n >= 2, ValueError, "token data '", pattern, "': expected at least 2 tokens, got ", n);
    d.split_ = std::clamp<std::int64_t>(n - std::max<std::int64_t>(val_tokens, 0), 1, n);
    return d;
  }

  std::int64_t size() const noexcept { return static_cast<std::int64_t>(tokens_.size()); }
  std::int64_t train_size() const noexcept { return split_; }
  std::int64_t val_size() const noexcept { return size() - split_; }
  const std::vector<std::string>& files() const noexcept { return files_; }
  const std::vector<std::int32_t>& tokens() const noexcept { return tokens_; }

  TokenCursor train_cursor() const { return TokenCursor(&tokens_, 0, split_); }
  TokenCursor val_cursor() const { return TokenCursor(&tokens_, split_, size()); }

 private:
  std::vector<std::int32_t> tokens_;
  std::vector<std::string> files_;
  std::int64_t split_ = 0;
};

}  // namespace mixtape::io
