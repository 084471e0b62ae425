#include "onnx_props.h"

#include <cstdint>
#include <fstream>
#include <limits>

#include "errors.h"

namespace rd {
namespace {

// Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
constexpr uint32_t kVarint = 0;
constexpr uint32_t kFixed64 = 1;
constexpr uint32_t kLengthDelimited = 2;
constexpr uint32_t kFixed32 = 5;

constexpr uint32_t kModelMetadataProps = 14;  // ModelProto.metadata_props
constexpr uint32_t kEntryKey = 1;             // StringStringEntryProto.key
constexpr uint32_t kEntryValue = 2;           // StringStringEntryProto.value

struct ParseError {
  std::string what;
};

// Bytes to decode: a file (top-level ModelProto, read lazily so the graph is skipped with a
// seek rather than loaded) or a string (one embedded message).
class Source {
 public:
  virtual ~Source() = default;
  virtual bool next(uint8_t& byte) = 0;  // false at the end
  virtual uint64_t remaining() = 0;
  virtual void read(std::string& out, uint64_t n) = 0;
  virtual void skip(uint64_t n) = 0;
};

class FileSource final : public Source {
 public:
  FileSource(std::ifstream& in, uint64_t size) : in_(in), size_(size) {}
  bool next(uint8_t& byte) override {
    char c;
    if (pos_ >= size_ || !in_.get(c)) return false;
    ++pos_;
    byte = static_cast<uint8_t>(c);
    return true;
  }
  uint64_t remaining() override { return size_ - pos_; }
  void read(std::string& out, uint64_t n) override {
    out.resize(static_cast<size_t>(n));
    if (n > 0 && !in_.read(&out[0], static_cast<std::streamsize>(n))) throw ParseError{"read failed"};
    pos_ += n;
  }
  void skip(uint64_t n) override {
    if (!in_.seekg(static_cast<std::streamoff>(n), std::ios::cur)) throw ParseError{"seek failed"};
    pos_ += n;
  }

 private:
  std::ifstream& in_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

class StringSource final : public Source {
 public:
  explicit StringSource(const std::string& data) : data_(data) {}
  bool next(uint8_t& byte) override {
    if (pos_ >= data_.size()) return false;
    byte = static_cast<uint8_t>(data_[pos_++]);
    return true;
  }
  uint64_t remaining() override { return data_.size() - pos_; }
  void read(std::string& out, uint64_t n) override {
    out.assign(data_, pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
  }
  void skip(uint64_t n) override { pos_ += static_cast<size_t>(n); }

 private:
  const std::string& data_;
  size_t pos_ = 0;
};

uint64_t read_varint(Source& src) {
  uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint8_t byte;
    if (!src.next(byte)) throw ParseError{"truncated varint"};
    value |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return value;
  }
  throw ParseError{"varint longer than 10 bytes"};
}

// Reads the next tag; false at a clean end of the message.
bool read_tag(Source& src, uint32_t& field, uint32_t& wire) {
  uint8_t first;
  if (!src.next(first)) return false;
  uint64_t tag = first & 0x7F;
  if (first & 0x80) {
    uint64_t rest = read_varint(src);
    tag |= rest << 7;
  }
  field = static_cast<uint32_t>(tag >> 3);
  wire = static_cast<uint32_t>(tag & 7);
  if (field == 0) throw ParseError{"field number 0"};
  return true;
}

uint64_t read_length(Source& src) {
  uint64_t n = read_varint(src);
  if (n > src.remaining()) throw ParseError{"length-delimited field runs past the end"};
  return n;
}

void skip_field(Source& src, uint32_t wire) {
  switch (wire) {
    case kVarint: read_varint(src); return;
    case kFixed64:
      if (src.remaining() < 8) throw ParseError{"truncated fixed64"};
      src.skip(8);
      return;
    case kLengthDelimited: src.skip(read_length(src)); return;
    case kFixed32:
      if (src.remaining() < 4) throw ParseError{"truncated fixed32"};
      src.skip(4);
      return;
    default: throw ParseError{"unsupported wire type " + std::to_string(wire)};
  }
}

// One StringStringEntryProto: key (1) and value (2), other fields skipped.
void parse_entry(const std::string& bytes, std::map<std::string, std::string>& props) {
  StringSource src(bytes);
  std::string key, value;
  uint32_t field, wire;
  while (read_tag(src, field, wire)) {
    if ((field == kEntryKey || field == kEntryValue) && wire == kLengthDelimited) {
      src.read(field == kEntryKey ? key : value, read_length(src));
    } else {
      skip_field(src, wire);
    }
  }
  props[key] = value;  // a repeated key: the last one wins, as in protobuf maps
}

}  // namespace

std::map<std::string, std::string> read_onnx_metadata_props(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error("cannot open model " + path);
  const std::streamoff size = in.tellg();
  in.seekg(0);
  if (size <= 0) throw Error("model " + path + " is empty (0 bytes)");

  std::map<std::string, std::string> props;
  FileSource src(in, static_cast<uint64_t>(size));
  try {
    uint32_t field, wire;
    while (read_tag(src, field, wire)) {
      if (field == kModelMetadataProps && wire == kLengthDelimited) {
        std::string entry;
        src.read(entry, read_length(src));
        parse_entry(entry, props);
      } else {
        skip_field(src, wire);
      }
    }
  } catch (const ParseError& e) {
    throw Error("cannot read " + path + " as an ONNX model (" + e.what +
                "); expected a .onnx file written by rd-export");
  }
  return props;
}

}  // namespace rd
