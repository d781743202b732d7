import Foundation

/// A NumPy `.npy` file (format version 1.0) written as it goes: the header names the dtype and
/// the shape, then the values follow in C order, appended a piece at a time, so that an array
/// larger than memory can be written. `numpy.load(path)` reads it (`mmap_mode="r"` maps it).
public final class NumpyFileWriter {
  /// The element types written here.
  public enum DType: String {
    /// Unsigned bytes (`|u1`): images.
    case uint8 = "|u1"
    /// Little-endian 64-bit integers (`<i8`): labels and indices.
    case int64 = "<i8"

    var size: Int { self == .uint8 ? 1 : 8 }
  }

  public let url: URL
  public let dtype: DType
  public let shape: [Int]
  private let handle: FileHandle
  private var written = 0
  private var expected: Int { shape.reduce(1, *) }

  /// Creates (or replaces) the file and writes its header.
  public init(url: URL, dtype: DType, shape: [Int]) throws {
    precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
    self.url = url
    self.dtype = dtype
    self.shape = shape
    guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
      throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
    }
    handle = try FileHandle(forWritingTo: url)
    try handle.write(contentsOf: NumpyFileWriter.header(dtype: dtype, shape: shape))
  }

  /// The 1.0 header: magic, version, the header's length, then a Python dict literal padded with
  /// spaces and ended by a newline so that the data starts at a multiple of 64 bytes.
  public static func header(dtype: DType, shape: [Int]) -> Data {
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var dict = "{'descr': '\(dtype.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
    let prefix = 10  // magic (6), version (2), header length (2)
    let total = (prefix + dict.utf8.count + 1 + 63) / 64 * 64
    dict += String(repeating: " ", count: total - prefix - dict.utf8.count - 1) + "\n"
    var out = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
    let length = UInt16(dict.utf8.count)
    out.append(contentsOf: [UInt8(length & 0xff), UInt8(length >> 8)])
    out.append(contentsOf: Array(dict.utf8))
    return out
  }

  /// Appends bytes (`uint8` arrays).
  public func append(_ bytes: [UInt8]) throws {
    precondition(dtype == .uint8)
    precondition(written + bytes.count <= expected, "more values than the shape \(shape) holds")
    try handle.write(contentsOf: Data(bytes))
    written += bytes.count
  }

  /// Appends integers (`int64` arrays), little-endian.
  public func append(_ values: [Int]) throws {
    precondition(dtype == .int64)
    precondition(written + values.count <= expected, "more values than the shape \(shape) holds")
    var data = Data(capacity: values.count * 8)
    for value in values { withUnsafeBytes(of: Int64(value).littleEndian) { data.append(contentsOf: $0) } }
    try handle.write(contentsOf: data)
    written += values.count
  }

  /// Ends the file; every value the shape holds must have been written.
  public func close() throws {
    precondition(written == expected, "\(written) values written, the shape \(shape) holds \(expected)")
    try handle.close()
  }
}
