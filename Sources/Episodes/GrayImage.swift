import Support
import CPNG

/// An 8-bit grayscale image, row-major, as stored in a PNG file (0 = black, 255 = white).
public struct GrayImage: Sendable, Equatable {
  /// Columns.
  public let width: Int
  /// Rows.
  public let height: Int
  /// `height * width` gray levels, row by row.
  public var pixels: [UInt8]

  /// An image from its gray levels; `pixels.count` must be `width * height`.
  public init(width: Int, height: Int, pixels: [UInt8]) {
    precondition(pixels.count == width * height, "GrayImage: \(pixels.count) pixels for \(width)x\(height)")
    self.width = width
    self.height = height
    self.pixels = pixels
  }

  /// Ink intensities, the network's input convention: 255 - gray, so ink (black) = 255 and
  /// paper (white) = 0; divided by 255 this is ink = 1.0, background = 0.0.
  public var ink: [UInt8] { pixels.map { 255 &- $0 } }

  /// From ink intensity (0...255) to the networks' input value (ink = 1.0, paper = 0.0).
  public static let inkScale: Float = 1 / 255

  /// Ink intensities as the networks' input values: `output[i] = ink[i] * inkScale`.
  public static func scaleInk(_ ink: UnsafeBufferPointer<UInt8>, into output: UnsafeMutableBufferPointer<Float>) {
    precondition(output.count >= ink.count, "scaleInk: \(ink.count) values into \(output.count)")
    for i in ink.indices { output[i] = Float(ink[i]) * inkScale }
  }

  /// Decodes PNG bytes (any bit depth, gray or colour, with or without alpha) into 8-bit gray.
  /// Colour is converted with libpng's sRGB coefficients; alpha is composited onto white.
  /// `name` appears in the error for a corrupt file.
  public static func decodePNG(_ bytes: [UInt8], name: String) throws -> GrayImage {
    guard bytes.count >= 8, bytes[0] == 0x89, bytes[1] == 0x50, bytes[2] == 0x4E, bytes[3] == 0x47 else {
      throw DatasetError.corruptImage(name: name, reason: "not a PNG file (bad signature)")
    }
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    // libpng keeps the input pointer until finish_read: both calls sit in this one closure.
    let result: Result<GrayImage, DatasetError> = bytes.withUnsafeBytes { raw in
      guard png_image_begin_read_from_memory(&image, raw.baseAddress, raw.count) != 0 else {
        return .failure(.corruptImage(name: name, reason: libpngMessage(image)))
      }
      let width = Int(image.width)
      let height = Int(image.height)
      guard width > 0, height > 0, width * height <= 64 << 20 else {
        png_image_free(&image)
        return .failure(.corruptImage(name: name, reason: "implausible size \(width)x\(height)"))
      }
      image.format = UInt32(PNG_FORMAT_GRAY)
      var pixels = [UInt8](repeating: 255, count: width * height)
      var white = png_color(red: 255, green: 255, blue: 255)
      let ok = pixels.withUnsafeMutableBytes { out in
        png_image_finish_read(&image, &white, out.baseAddress, Int32(width), nil)
      }
      guard ok != 0 else { return .failure(.corruptImage(name: name, reason: libpngMessage(image))) }
      return .success(GrayImage(width: width, height: height, pixels: pixels))
    }
    return try result.get()
  }

  private static func libpngMessage(_ image: png_image) -> String {
    var message = image.message
    let text = withUnsafeBytes(of: &message) { raw in
      String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
    return text.isEmpty ? "libpng could not read it" : text
  }

  /// Resampling to `width` x `height`: area averaging when shrinking both sides (each output
  /// pixel is the mean of the input area it covers, as OpenCV's INTER_AREA, so thin strokes do
  /// not alias away), bilinear otherwise; the identity when the size is unchanged.
  /// With `resampling: .nearest`, nearest neighbour as PIL's `resize` (`nearestResized`).
  public func resized(width newWidth: Int, height newHeight: Int, resampling: ImageResampling = .area) -> GrayImage {
    if newWidth == width && newHeight == height { return self }
    if resampling == .nearest { return nearestResized(width: newWidth, height: newHeight) }
    if newWidth < width && newHeight < height { return areaResized(width: newWidth, height: newHeight) }
    return bilinearResized(width: newWidth, height: newHeight)
  }

  /// Nearest-neighbour resampling as PIL's `Image.resize(..., NEAREST)`: output pixel x takes
  /// input pixel floor((x + 0.5) * width / newWidth), rows alike (exact in integers).
  public func nearestResized(width newWidth: Int, height newHeight: Int) -> GrayImage {
    precondition(newWidth > 0 && newHeight > 0, "resize to \(newWidth)x\(newHeight)")
    // floor((x + 0.5) * w / nw) = floor((2x + 1) * w / (2 nw)), in integers.
    let columns = (0..<newWidth).map { min(width - 1, (2 * $0 + 1) * width / (2 * newWidth)) }
    let rows = (0..<newHeight).map { min(height - 1, (2 * $0 + 1) * height / (2 * newHeight)) }
    var out = [UInt8](repeating: 0, count: newWidth * newHeight)
    for (y, sy) in rows.enumerated() {
      for (x, sx) in columns.enumerated() { out[y * newWidth + x] = pixels[sy * width + sx] }
    }
    return GrayImage(width: newWidth, height: newHeight, pixels: out)
  }

  /// Area-averaging downsampling with fractional pixel coverage.
  public func areaResized(width newWidth: Int, height newHeight: Int) -> GrayImage {
    precondition(newWidth > 0 && newHeight > 0 && newWidth <= width && newHeight <= height, "area resize \(width)x\(height) -> \(newWidth)x\(newHeight)")
    let scaleX = Double(width) / Double(newWidth), scaleY = Double(height) / Double(newHeight)
    // Coverage of each input column / row by each output column / row.
    func weights(_ count: Int, _ scale: Double, _ inputCount: Int) -> [[(Int, Double)]] {
      (0..<count).map { o in
        let start = Double(o) * scale, end = start + scale
        var out: [(Int, Double)] = []
        var i = Int(start)
        while Double(i) < end && i < inputCount {
          let w = min(end, Double(i + 1)) - max(start, Double(i))
          if w > 1e-12 { out.append((i, w)) }
          i += 1
        }
        return out
      }
    }
    let wx = weights(newWidth, scaleX, width), wy = weights(newHeight, scaleY, height)
    var out = [UInt8](repeating: 0, count: newWidth * newHeight)
    let area = scaleX * scaleY
    for y in 0..<newHeight {
      for x in 0..<newWidth {
        var sum = 0.0
        for (iy, fy) in wy[y] { for (ix, fx) in wx[x] { sum += Double(pixels[iy * width + ix]) * fy * fx } }
        out[y * newWidth + x] = UInt8(max(0, min(255, (sum / area).rounded())))
      }
    }
    return GrayImage(width: newWidth, height: newHeight, pixels: out)
  }

  /// Bilinear resampling with half-pixel centres (PyTorch's `align_corners=False`, OpenCV's
  /// INTER_LINEAR).
  public func bilinearResized(width newWidth: Int, height newHeight: Int) -> GrayImage {
    precondition(newWidth > 0 && newHeight > 0, "resize to \(newWidth)x\(newHeight)")
    var out = [UInt8](repeating: 0, count: newWidth * newHeight)
    let scaleX = Double(width) / Double(newWidth)
    let scaleY = Double(height) / Double(newHeight)
    pixels.withUnsafeBufferPointer { src in
      out.withUnsafeMutableBufferPointer { dst in
        for y in 0..<newHeight {
          let sy = max(0, min(Double(height - 1), (Double(y) + 0.5) * scaleY - 0.5))
          let y0 = Int(sy)
          let y1 = min(y0 + 1, height - 1)
          let fy = sy - Double(y0)
          for x in 0..<newWidth {
            let sx = max(0, min(Double(width - 1), (Double(x) + 0.5) * scaleX - 0.5))
            let x0 = Int(sx)
            let x1 = min(x0 + 1, width - 1)
            let fx = sx - Double(x0)
            let top = Double(src[y0 * width + x0]) * (1 - fx) + Double(src[y0 * width + x1]) * fx
            let bottom = Double(src[y1 * width + x0]) * (1 - fx) + Double(src[y1 * width + x1]) * fx
            dst[y * newWidth + x] = UInt8(max(0, min(255, (top * (1 - fy) + bottom * fy).rounded())))
          }
        }
      }
    }
    return GrayImage(width: newWidth, height: newHeight, pixels: out)
  }
}

extension GrayImage {
  /// Encodes the image as an 8-bit grayscale PNG (libpng's simplified write API).
  public func encodePNG() throws -> [UInt8] {
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    image.width = UInt32(width)
    image.height = UInt32(height)
    image.format = UInt32(PNG_FORMAT_GRAY)
    var size = 0
    let ok = pixels.withUnsafeBytes { raw -> Bool in
      guard png_image_write_to_memory(&image, nil, &size, 0, raw.baseAddress, Int32(width), nil) != 0 else { return false }
      return true
    }
    guard ok, size > 0 else { throw DatasetError.corruptImage(name: "<encoder>", reason: "libpng could not size the PNG") }
    var out = [UInt8](repeating: 0, count: size)
    let written = pixels.withUnsafeBytes { raw in
      out.withUnsafeMutableBytes { dst in
        png_image_write_to_memory(&image, dst.baseAddress, &size, 0, raw.baseAddress, Int32(width), nil)
      }
    }
    guard written != 0 else { throw DatasetError.corruptImage(name: "<encoder>", reason: "libpng could not encode the PNG") }
    return Array(out[0..<size])
  }
}
