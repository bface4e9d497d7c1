#include "io/idx.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tensor/error.h"

namespace lumen::io {
namespace {

// The bytes of a file, inflated when it is gzip (one or more concatenated members, as gunzip
// reads them). read() returns fewer bytes than asked only at the end of the data; a gzip stream
// that is corrupt or ends before its trailer throws. The gzip trailer's CRC-32 and length are
// checked by zlib when the stream's end is reached, so callers read until read() returns short.
class ByteReader {
 public:
  explicit ByteReader(const std::string& path) : path_(path) {
    f_ = std::fopen(path.c_str(), "rb");
    LUMEN_CHECK(f_ != nullptr, "read_idx: cannot open '", path, "': ", std::strerror(errno));
    struct stat st {};
    if (fstat(fileno(f_), &st) == 0) {
      LUMEN_CHECK(!S_ISDIR(st.st_mode), "read_idx: '", path, "' is a directory, not an IDX file");
      file_size_ = static_cast<uint64_t>(st.st_size);
    }
    in_.resize(kChunk);
    fill();
    gzip_ = in_len_ >= 2 && in_[0] == 0x1f && in_[1] == 0x8b;
    if (gzip_) {
      // 16 + MAX_WBITS: a gzip wrapper (header, then CRC-32 and length in the trailer).
      LUMEN_CHECK(inflateInit2(&zs_, 16 + MAX_WBITS) == Z_OK, "read_idx: '", path,
                  "': zlib inflateInit2 failed");
      zs_init_ = true;
    }
  }
  ~ByteReader() {
    if (zs_init_) inflateEnd(&zs_);
    if (f_) std::fclose(f_);
  }
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  bool gzip() const { return gzip_; }
  uint64_t file_size() const { return file_size_; }

  size_t read(void* dst, size_t n) { return gzip_ ? read_gzip(dst, n) : read_plain(dst, n); }

 private:
  static constexpr size_t kChunk = size_t{1} << 18;

  // Refills the input buffer (only when it is used up); returns the bytes now available.
  size_t fill() {
    if (in_pos_ == in_len_) {
      in_pos_ = 0;
      in_len_ = std::fread(in_.data(), 1, in_.size(), f_);
      LUMEN_CHECK(!std::ferror(f_), "read_idx: error reading '", path_,
                  "': ", std::strerror(errno));
    }
    return in_len_ - in_pos_;
  }

  size_t read_plain(void* dst, size_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    size_t got = std::min(n, in_len_ - in_pos_);
    if (got > 0) std::memcpy(out, in_.data() + in_pos_, got);  // dst is null for 0 elements
    in_pos_ += got;
    if (got < n) {
      // The rest straight into the destination: one copy from the page cache.
      got += std::fread(out + got, 1, n - got, f_);
      LUMEN_CHECK(!std::ferror(f_), "read_idx: error reading '", path_,
                  "': ", std::strerror(errno));
    }
    return got;
  }

  size_t read_gzip(void* dst, size_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    size_t got = 0;
    while (got < n) {
      if (member_done_) {
        if (fill() == 0) return got;  // the end of the last member is the end of the data
        // More bytes follow: another gzip member, which inflate checks from its header on.
        LUMEN_CHECK(inflateReset(&zs_) == Z_OK, "read_idx: '", path_,
                    "': zlib inflateReset failed");
        member_done_ = false;
        new_member_ = true;
      }
      if (fill() == 0 && !input_ended_) input_ended_ = true;
      size_t chunk = std::min<size_t>(n - got, size_t{1} << 30);  // avail_out is 32-bit
      zs_.next_in = in_.data() + in_pos_;
      zs_.avail_in = static_cast<uInt>(in_len_ - in_pos_);
      zs_.next_out = out + got;
      zs_.avail_out = static_cast<uInt>(chunk);
      int ret = inflate(&zs_, Z_NO_FLUSH);
      in_pos_ = in_len_ - zs_.avail_in;
      size_t produced = chunk - zs_.avail_out;
      got += produced;
      if (produced > 0) new_member_ = false;
      if (ret == Z_STREAM_END) {
        member_done_ = true;
        new_member_ = false;
        ++members_;
        continue;
      }
      if (ret == Z_OK) continue;
      if (ret == Z_BUF_ERROR && !input_ended_) continue;  // no progress yet: read more input
      if (ret == Z_BUF_ERROR)
        detail::throw_error("read_idx: '", path_, "': truncated gzip file: the compressed data (",
                            file_size_, " bytes) ends before the end of the gzip stream");
      if (new_member_ && members_ > 0)
        detail::throw_error(
            "read_idx: '", path_, "': trailing bytes after gzip member ", members_,
            " that are not another gzip member (zlib: ", zs_.msg ? zs_.msg : "invalid data", ")");
      detail::throw_error("read_idx: '", path_, "': corrupt gzip data (zlib: ",
                          zs_.msg ? zs_.msg : (ret == Z_MEM_ERROR ? "out of memory" : "error"),
                          ")");
    }
    return got;
  }

  std::string path_;
  FILE* f_ = nullptr;
  uint64_t file_size_ = 0;
  std::vector<unsigned char> in_;
  size_t in_pos_ = 0, in_len_ = 0;
  bool gzip_ = false;
  z_stream zs_{};
  bool zs_init_ = false;
  bool member_done_ = false, new_member_ = true, input_ended_ = false;
  int members_ = 0;
};

const char* idx_type_name(unsigned type) {
  switch (type) {
    case 0x08:
      return "u8";
    case 0x09:
      return "i8";
    case 0x0B:
      return "i16";
    case 0x0C:
      return "i32";
    case 0x0D:
      return "f32";
    case 0x0E:
      return "f64";
    default:
      return "unknown";
  }
}

std::string hex32(const unsigned char b[4]) {
  char s[11];
  std::snprintf(s, sizeof s, "0x%02X%02X%02X%02X", b[0], b[1], b[2], b[3]);
  return s;
}

}  // namespace

Tensor read_idx(const std::string& path) {
  ByteReader in(path);
  const char* kind = in.gzip() ? " (after gunzip)" : "";
  unsigned char magic[4];
  size_t got = in.read(magic, 4);
  LUMEN_CHECK(got > 0, "read_idx: '", path, "' is empty", kind, "; expected an IDX file");
  LUMEN_CHECK(got == 4, "read_idx: '", path, "' is truncated: ", got, " bytes", kind,
              ", shorter than the 4-byte IDX magic number");
  LUMEN_CHECK(magic[0] == 0 && magic[1] == 0, "read_idx: '", path, "' has bad magic number ",
              hex32(magic), kind,
              ": not an IDX file (expected 0x00000803 for images or 0x00000801 for labels)");
  LUMEN_CHECK(magic[2] == 0x08, "read_idx: '", path, "' has magic number ", hex32(magic),
              ": element type 0x", std::hex, static_cast<unsigned>(magic[2]), std::dec, " (",
              idx_type_name(magic[2]), ") is not supported; only u8 (0x08) IDX files are read");
  int ndim = magic[3];
  LUMEN_CHECK(ndim > 0, "read_idx: '", path, "' has magic number ", hex32(magic),
              ", which declares 0 dims; expected at least 1");

  std::vector<unsigned char> header(static_cast<size_t>(ndim) * 4);
  got = in.read(header.data(), header.size());
  LUMEN_CHECK(got == header.size(), "read_idx: '", path, "' is truncated in its header: ", ndim,
              " dims need ", header.size(), " bytes of sizes after the magic number, but only ",
              got, " follow", kind);
  Shape dims(static_cast<size_t>(ndim));
  uint64_t bytes = 1;
  bool huge = false;
  for (int d = 0; d < ndim; ++d) {
    const unsigned char* p = &header[static_cast<size_t>(d) * 4];
    uint64_t size = (uint64_t{p[0]} << 24) | (uint64_t{p[1]} << 16) | (uint64_t{p[2]} << 8) | p[3];
    dims[static_cast<size_t>(d)] = static_cast<int64_t>(size);
    if (size != 0 && bytes > (uint64_t{1} << 50) / size) huge = true;
    bytes *= size;
  }
  uint64_t header_bytes = 4 + header.size();
  // Check the declared size against what the file can hold before allocating it: a plain file
  // holds it exactly; deflate expands at most 1032:1 (zlib's limit for one stream).
  if (!in.gzip() && in.file_size() >= header_bytes) {
    uint64_t have = in.file_size() - header_bytes;
    LUMEN_CHECK(!huge && have >= bytes, "read_idx: '", path, "' is truncated: its header declares ",
                "dims ", ShapeStr{dims}, " (",
                huge ? std::string("more than 2^50") : std::to_string(bytes),
                " bytes of data) but only ", have, " bytes follow the header");
  }
  if (in.gzip())
    LUMEN_CHECK(!huge && bytes / 1032 <= in.file_size(), "read_idx: '", path, "' declares dims ",
                ShapeStr{dims}, ", more data than a gzip file of ", in.file_size(),
                " bytes can hold: it is truncated or corrupt");

  Tensor out = empty(dims, {.dtype = DType::u8});
  got = in.read(out.data_ptr(), bytes);
  LUMEN_CHECK(got == bytes, "read_idx: '", path, "' is truncated: its header declares dims ",
              ShapeStr{dims}, " (", bytes, " bytes of data) but only ", got, " bytes follow", kind);
  // Anything after the data is an error too (and, for gzip, reading to the end of the stream
  // is what checks its CRC-32 and length).
  uint64_t extra = 0;
  std::vector<unsigned char> sink(1 << 16);
  for (size_t n; (n = in.read(sink.data(), sink.size())) > 0;) extra += n;
  LUMEN_CHECK(extra == 0, "read_idx: '", path, "' has ", extra, " trailing bytes", kind,
              " after the ", bytes, " bytes of data its header declares (dims ", ShapeStr{dims},
              ")");
  return out;
}

}  // namespace lumen::io
