import Foundation
import Support

// safetensors: an 8-byte little-endian header length, a JSON header mapping each tensor name
// to {dtype, shape, data_offsets} (plus an optional "__metadata__" of strings), then raw
// little-endian data. It opens in PyTorch (safetensors.torch.load_file) and numpy.

/// What can go wrong reading or writing a checkpoint or tensor file.
public enum CheckpointError: Error, Equatable, CustomStringConvertible, LocalizedError {
  /// Not a safetensors file, or a damaged one.
  case malformed(path: String, reason: String)
  /// A tensor the configuration needs is absent.
  case missingTensor(path: String, name: String)
  /// A tensor has another shape than the configuration gives.
  case shapeMismatch(path: String, name: String, expected: [Int], found: [Int])
  /// The file holds tensors the configuration does not have.
  case unexpectedTensors(path: String, names: [String])
  /// The checkpoint was written for another model configuration.
  case configMismatch(path: String, detail: String)
  /// A checkpoint format newer than this build reads.
  case unsupportedVersion(path: String, found: String)
  /// The file could not be written.
  case writeFailed(path: String, reason: String)
  /// An ensemble checkpoint where one network is needed (training, resuming).
  case ensembleWhereOneNetworkIsNeeded(path: String, members: Int)
  /// A tensor holds a value no trained network has (NaN, an infinity, a negative variance), or a
  /// metadata entry one no training writes (`metadata`: a negative step count).
  case impossibleValue(path: String, name: String, reason: String, metadata: Bool = false)
  /// A value too large for half precision (F16 holds at most 65504 in magnitude).
  case halfOverflow(path: String, name: String, value: Float)

  public var description: String {
    switch self {
    case .malformed(let path, let reason): return "\(path) is not a readable safetensors checkpoint (\(reason)); check the path or re-create the checkpoint"
    case .missingTensor(let path, let name): return "checkpoint \(path) lacks tensor '\(name)' that the model configuration needs; it was written for another model"
    case .shapeMismatch(let path, let name, let expected, let found):
      return "checkpoint \(path): tensor '\(name)' has shape \(found), the model configuration needs \(expected); use the experiment file the checkpoint was trained with"
    case .unexpectedTensors(let path, let names):
      return
        "checkpoint \(path) has tensors the model configuration lacks (\(names.prefix(3).joined(separator: ", "))\(names.count > 3 ? ", ..." : "")); it was written for another model"
    case .configMismatch(let path, let detail):
      return "checkpoint \(path) does not match the configuration: \(detail); use the experiment file it was trained with, or a checkpoint trained with this one"
    case .unsupportedVersion(let path, let found): return "checkpoint \(path) has format version \(found), newer than this oneshot-bench reads; upgrade oneshot-bench"
    case .writeFailed(let path, let reason): return "cannot write \(path): \(reason); check the folder's permissions and free space"
    case .impossibleValue(let path, let name, let reason, let metadata):
      return "checkpoint \(path): \(metadata ? "metadata entry" : "tensor") '\(name)' \(reason); the file is damaged or its training diverged: use another checkpoint (a run keeps its best as runs/<run-id>/best.safetensors)"
    case .halfOverflow(let path, let name, let value):
      return "cannot write \(path) in half precision: tensor '\(name)' holds \(value), beyond F16's 65504; write it in full precision (drop --half)"
    case .ensembleWhereOneNetworkIsNeeded(let path, let members):
      return "checkpoint \(path) is an ensemble of \(members) networks: it can be evaluated (run --eval-only, predict) but not trained or resumed; use one member's checkpoint"
    }
  }
  public var errorDescription: String? { description }
}

/// A tensor read from or written to a safetensors file (F32 or F16 on disk; Float in memory).
public struct NamedTensor: Sendable, Equatable {
  /// Name.
  public var name: String
  /// Shape.
  public var shape: [Int]
  /// Values.
  public var values: [Float]
  /// Store as IEEE half precision (F16) instead of F32.
  public var half: Bool

  /// A tensor to write.
  public init(name: String, shape: [Int], values: [Float], half: Bool = false) {
    precondition(values.count == shape.reduce(1, *), "tensor \(name): \(values.count) values for shape \(shape)")
    self.name = name
    self.shape = shape
    self.values = values
    self.half = half
  }
}

/// Reading and writing safetensors files.
public enum SafeTensors {
  /// Serialises tensors and string metadata.
  public static func encode(_ tensors: [NamedTensor], metadata: [String: String]) throws -> Data {
    var header: [String: Any] = [:]
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    var offset = 0
    for tensor in tensors {
      let bytes = tensor.values.count * (tensor.half ? 2 : 4)
      header[tensor.name] = ["dtype": tensor.half ? "F16" : "F32", "shape": tensor.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
      offset += bytes
    }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    while json.count % 8 != 0 { json.append(0x20) }  // pad so the data is 8-byte aligned
    var out = Data()
    out.reserveCapacity(8 + json.count + offset)
    var length = UInt64(json.count).littleEndian
    withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
    out.append(json)
    for tensor in tensors {
      if tensor.half {
        if let large = tensor.values.first(where: { !$0.isNaN && abs($0) > Float(Float16.greatestFiniteMagnitude) }) {
          throw CheckpointError.halfOverflow(path: "the checkpoint", name: tensor.name, value: large)
        }
        var halves = tensor.values.map { Float16($0).bitPattern.littleEndian }
        halves.withUnsafeMutableBytes { out.append(contentsOf: $0) }
      } else {
        var words = tensor.values.map { $0.bitPattern.littleEndian }
        words.withUnsafeMutableBytes { out.append(contentsOf: $0) }
      }
    }
    return out
  }

  /// Writes atomically: a temporary file in the same folder, then a rename.
  public static func write(_ tensors: [NamedTensor], metadata: [String: String], to url: URL) throws {
    let data: Data
    do {
      data = try encode(tensors, metadata: metadata)
    } catch CheckpointError.halfOverflow(_, let name, let value) {
      throw CheckpointError.halfOverflow(path: url.path, name: name, value: value)
    }
    let folder = url.deletingLastPathComponent()
    do {
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      try data.write(to: url, options: .atomic)
    } catch {
      throw CheckpointError.writeFailed(path: url.path, reason: error.localizedDescription)
    }
  }

  /// Reads every tensor (F32, F16 or BF16 as Float; I64 as Float) and the metadata.
  public static func read(_ url: URL) throws -> (tensors: [String: NamedTensor], metadata: [String: String]) {
    let path = url.path
    // A checkpoint of the largest network the bounds allow (250 million parameters with Adam's
    // moments in f32) is 3 GB; a device, a pipe or a folder is refused before reading.
    if let problem = UserFile.problem(path, maximumBytes: 4 << 30) { throw CheckpointError.malformed(path: path, reason: "the file \(problem)") }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw CheckpointError.malformed(path: path, reason: "file not found or unreadable")
    }
    return try decode(data, path: path)
  }

  /// Parses safetensors bytes; `path` names the file in errors.
  public static func decode(_ data: Data, path: String) throws -> (tensors: [String: NamedTensor], metadata: [String: String]) {
    guard data.count >= 8 else { throw CheckpointError.malformed(path: path, reason: "shorter than 8 bytes") }
    let length = data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    guard length <= UInt64(data.count - 8), length < 100_000_000 else {
      throw CheckpointError.malformed(path: path, reason: "header length \(length) exceeds the file")
    }
    let headerData = data.subdata(in: 8..<(8 + Int(length)))
    guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
      throw CheckpointError.malformed(path: path, reason: "header is not a JSON object")
    }
    let base = 8 + Int(length)
    var metadata: [String: String] = [:]
    var tensors: [String: NamedTensor] = [:]
    for (name, value) in header {
      if name == "__metadata__" {
        metadata = (value as? [String: String]) ?? [:]
        continue
      }
      // Every size is untrusted: checked arithmetic, and nothing larger than the file.
      guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String, let shape = entry["shape"] as? [Int], shape.count <= 8,
        shape.allSatisfy({ $0 >= 0 }), let offsets = entry["data_offsets"] as? [Int], offsets.count == 2, offsets[0] >= 0, offsets[1] >= offsets[0],
        offsets[1] <= data.count - base
      else { throw CheckpointError.malformed(path: path, reason: "bad header entry for '\(name)'") }
      var count = 1
      for side in shape {
        let (product, overflow) = count.multipliedReportingOverflow(by: side)
        guard !overflow, product <= data.count else { throw CheckpointError.malformed(path: path, reason: "tensor '\(name)' has shape \(shape), larger than the file") }
        count = product
      }
      let width: Int
      switch dtype {
      case "F32": width = 4
      case "F16", "BF16": width = 2
      case "I64": width = 8
      default: throw CheckpointError.malformed(path: path, reason: "tensor '\(name)' has unsupported dtype \(dtype)")
      }
      guard offsets[1] - offsets[0] == count * width else {
        throw CheckpointError.malformed(path: path, reason: "tensor '\(name)' has \(offsets[1] - offsets[0]) bytes for shape \(shape) of \(dtype)")
      }
      var values = [Float](repeating: 0, count: count)
      data.withUnsafeBytes { raw in
        let start = raw.baseAddress! + base + offsets[0]
        for i in 0..<count {
          switch dtype {
          case "F32": values[i] = Float(bitPattern: UInt32(littleEndian: (start + 4 * i).loadUnaligned(as: UInt32.self)))
          case "F16": values[i] = Float(Float16(bitPattern: UInt16(littleEndian: (start + 2 * i).loadUnaligned(as: UInt16.self))))
          case "BF16": values[i] = Float(bitPattern: UInt32(UInt16(littleEndian: (start + 2 * i).loadUnaligned(as: UInt16.self))) << 16)
          default: values[i] = Float(Int64(littleEndian: (start + 8 * i).loadUnaligned(as: Int64.self)))
          }
        }
      }
      tensors[name] = NamedTensor(name: name, shape: shape, values: values, half: dtype == "F16")
    }
    return (tensors, metadata)
  }
}
