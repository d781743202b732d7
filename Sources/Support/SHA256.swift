import Foundation

// SHA-256 (FIPS 180-4), used for dataset fingerprints and checksums. Foundation on Linux has
// no CryptoKit, and one hash does not justify another package dependency.

/// A streaming SHA-256 digest.
public struct SHA256: Sendable {
  private var state: [UInt32] = [
    0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab,
    0x5be0_cd19,
  ]
  private var buffer: [UInt8] = []
  private var byteCount: UInt64 = 0

  private static let roundConstants: [UInt32] = [
    0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4,
    0xab1c_5ed5, 0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe,
    0x9bdc_06a7, 0xc19b_f174, 0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f,
    0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da, 0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7,
    0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967, 0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc,
    0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85, 0xa2bf_e8a1, 0xa81a_664b,
    0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070, 0x19a4_c116,
    0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
    0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7,
    0xc671_78f2,
  ]

  /// A digest with nothing hashed yet.
  public init() {}

  /// Hashes `bytes` into the digest.
  public mutating func update<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
    byteCount &+= UInt64(bytes.count)
    let whole = bytes.withContiguousStorageIfAvailable { raw -> Bool in
      ingest(UnsafeRawBufferPointer(raw))
      return true
    }
    if whole == nil {
      let copy = Array(bytes)
      copy.withUnsafeBytes { ingest($0) }
    }
  }

  private mutating func ingest(_ raw: UnsafeRawBufferPointer) {
    var offset = 0
    if !buffer.isEmpty {
      let take = min(64 - buffer.count, raw.count)
      buffer.append(contentsOf: raw[0..<take])
      offset = take
      if buffer.count == 64 {
        let block = buffer
        block.withUnsafeBytes { compress($0.baseAddress!) }
        buffer.removeAll(keepingCapacity: true)
      }
    }
    while raw.count - offset >= 64 {
      compress(raw.baseAddress! + offset)
      offset += 64
    }
    if offset < raw.count { buffer.append(contentsOf: raw[offset...]) }
  }

  /// Finishes the digest and returns the 32-byte hash.
  public mutating func finalize() -> [UInt8] {
    let bitLength = byteCount &* 8
    var padding: [UInt8] = [0x80]
    let used = Int(byteCount % 64)
    let zeros = used < 56 ? 55 - used : 119 - used
    padding.append(contentsOf: repeatElement(0, count: zeros))
    for shift in stride(from: 56, through: 0, by: -8) { padding.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
    padding.withUnsafeBytes { ingest($0) }
    var out: [UInt8] = []
    out.reserveCapacity(32)
    for word in state {
      out.append(UInt8(truncatingIfNeeded: word >> 24))
      out.append(UInt8(truncatingIfNeeded: word >> 16))
      out.append(UInt8(truncatingIfNeeded: word >> 8))
      out.append(UInt8(truncatingIfNeeded: word))
    }
    return out
  }

  private mutating func compress(_ block: UnsafeRawPointer) {
    withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
      SHA256.roundConstants.withUnsafeBufferPointer { k in
        compress(block, w, k)
      }
    }
  }

  private mutating func compress(_ block: UnsafeRawPointer, _ w: UnsafeMutableBufferPointer<UInt32>, _ k: UnsafeBufferPointer<UInt32>) {
    do {
      for i in 0..<16 {
        let b = block + 4 * i
        w[i] =
          UInt32(b.load(as: UInt8.self)) << 24 | UInt32(b.load(fromByteOffset: 1, as: UInt8.self)) << 16
          | UInt32(b.load(fromByteOffset: 2, as: UInt8.self)) << 8 | UInt32(b.load(fromByteOffset: 3, as: UInt8.self))
      }
      for i in 16..<64 {
        let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
        let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
        w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
      }
      var a = state[0], b = state[1], c = state[2], d = state[3]
      var e = state[4], f = state[5], g = state[6], h = state[7]
      for i in 0..<64 {
        let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
        let ch = (e & f) ^ (~e & g)
        let t1 = h &+ s1 &+ ch &+ k[i] &+ w[i]
        let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
        let maj = (a & b) ^ (a & c) ^ (b & c)
        let t2 = s0 &+ maj
        h = g; g = f; f = e; e = d &+ t1
        d = c; c = b; b = a; a = t1 &+ t2
      }
      state[0] &+= a; state[1] &+= b; state[2] &+= c; state[3] &+= d
      state[4] &+= e; state[5] &+= f; state[6] &+= g; state[7] &+= h
    }
  }

  @inline(__always) private func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }

  /// The hex SHA-256 of a file, read in 1 MiB chunks; nil when it cannot be opened.
  public static func hex(ofFile url: URL) -> String? {
    guard let handle = FileHandle(forReadingAtPath: url.path) else { return nil }
    defer { try? handle.close() }
    var digest = SHA256()
    while true {
      let chunk = handle.readData(ofLength: 1 << 20)
      if chunk.isEmpty { break }
      digest.update(chunk)
    }
    return hexString(digest.finalize())
  }

  /// The hex SHA-256 of `bytes` in one call.
  public static func hex<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    var digest = SHA256()
    digest.update(bytes)
    return hexString(digest.finalize())
  }
}

/// Lower-case hexadecimal of `bytes`.
public func hexString(_ bytes: [UInt8]) -> String {
  let digits = Array("0123456789abcdef".utf8)
  var out = [UInt8]()
  out.reserveCapacity(bytes.count * 2)
  for byte in bytes {
    out.append(digits[Int(byte >> 4)])
    out.append(digits[Int(byte & 15)])
  }
  return String(decoding: out, as: UTF8.self)
}
