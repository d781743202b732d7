import CJPEG

extension GrayImage {
  /// Whether `bytes` start as a JPEG file does (SOI marker and the next marker's 0xFF).
  public static func looksLikeJPEG(_ bytes: [UInt8]) -> Bool { bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF }

  /// Whether `bytes` start with PNG's signature.
  public static func looksLikePNG(_ bytes: [UInt8]) -> Bool { bytes.count >= 8 && bytes[0] == 0x89 && bytes[1] == 0x50 && bytes[2] == 0x4E && bytes[3] == 0x47 }

  /// Decodes baseline or progressive JPEG bytes into 8-bit gray with libjpeg-turbo (gray and
  /// YCbCr files; luminance is the gray level). CMYK and YCCK files, 12-bit files, truncated
  /// or corrupt data and implausible sizes are refused with a reason naming `name`. EXIF
  /// orientation is not applied: pixels are taken in stored order (the README says so).
  public static func decodeJPEG(_ bytes: [UInt8], name: String) throws -> GrayImage {
    guard looksLikeJPEG(bytes) else {
      let what = looksLikePNG(bytes) ? "a PNG file with a JPEG name; rename it to .png" : "not a JPEG file (bad signature)"
      throw DatasetError.corruptImage(name: name, reason: what)
    }
    guard let handle = tjInitDecompress() else { throw DatasetError.corruptImage(name: name, reason: "libjpeg-turbo could not start a decoder") }
    defer { tjDestroy(handle) }
    func libraryMessage() -> String {
      let text = tjGetErrorStr2(handle).map { String(cString: $0) } ?? ""
      return text.isEmpty ? "libjpeg-turbo could not read it" : "libjpeg-turbo: \(text)"
    }
    var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
    let header = bytes.withUnsafeBufferPointer { tjDecompressHeader3(handle, $0.baseAddress, UInt(bytes.count), &width, &height, &subsampling, &colorspace) }
    guard header == 0 else { throw DatasetError.corruptImage(name: name, reason: libraryMessage()) }
    guard colorspace != Int32(TJCS_CMYK.rawValue), colorspace != Int32(TJCS_YCCK.rawValue) else {
      throw DatasetError.corruptImage(name: name, reason: "a CMYK JPEG (print colour); save it as RGB or gray")
    }
    let (w, h) = (Int(width), Int(height))
    guard w > 0, h > 0, w * h <= 64 << 20 else { throw DatasetError.corruptImage(name: name, reason: "implausible size \(w)x\(h)") }
    var pixels = [UInt8](repeating: 255, count: w * h)
    // Stop on warnings too: a truncated file (libjpeg-turbo pads it with gray and warns) is
    // refused, not half-read.
    let flags = Int32(TJFLAG_STOPONWARNING | TJFLAG_ACCURATEDCT)
    let status = bytes.withUnsafeBufferPointer { input in
      pixels.withUnsafeMutableBufferPointer { output in
        tjDecompress2(handle, input.baseAddress, UInt(bytes.count), output.baseAddress, width, width, height, Int32(TJPF_GRAY.rawValue), flags)
      }
    }
    guard status == 0 else { throw DatasetError.corruptImage(name: name, reason: libraryMessage()) }
    return GrayImage(width: w, height: h, pixels: pixels)
  }

  /// Decodes an image file by its name: `.png`, or `.jpg` / `.jpeg` (any case).
  public static func decode(_ bytes: [UInt8], name: String) throws -> GrayImage {
    let lower = name.lowercased()
    if lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg") { return try decodeJPEG(bytes, name: name) }
    guard !looksLikeJPEG(bytes) else { throw DatasetError.corruptImage(name: name, reason: "a JPEG file with a PNG name; rename it to .jpg") }
    return try decodePNG(bytes, name: name)
  }

  /// Whether `name` is an image file the folder readers take.
  public static func isImageFileName(_ name: String) -> Bool {
    let lower = name.lowercased()
    return lower.hasSuffix(".png") || lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg")
  }

  /// The image as a gray JPEG at `quality` (1...100), through libjpeg-turbo: for writing folders
  /// of your own (the glyph demonstration, tests).
  public func encodeJPEG(quality: Int = 95) throws -> [UInt8] {
    guard let handle = tjInitCompress() else { throw DatasetError.corruptImage(name: "jpeg", reason: "libjpeg-turbo could not start an encoder") }
    defer { tjDestroy(handle) }
    var buffer: UnsafeMutablePointer<UInt8>? = nil
    var size: UInt = 0
    let status = pixels.withUnsafeBufferPointer {
      tjCompress2(handle, $0.baseAddress, Int32(width), Int32(width), Int32(height), Int32(TJPF_GRAY.rawValue), &buffer, &size, Int32(TJSAMP_GRAY.rawValue), Int32(quality), 0)
    }
    defer { tjFree(buffer) }
    guard status == 0, let buffer else { throw DatasetError.corruptImage(name: "jpeg", reason: String(cString: tjGetErrorStr2(handle))) }
    return Array(UnsafeBufferPointer(start: buffer, count: Int(size)))
  }
}
