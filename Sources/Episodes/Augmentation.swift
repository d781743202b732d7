import Foundation

/// Koch et al. 2015's affine distortions: rotation +-10 degrees, shear +-0.3, scale 0.8-1.2,
/// translation +-2 px, each component applied with probability 0.5, about the image centre,
/// resampled bilinearly on the same grid (outside the image is background).
public struct AffineAugmentation: Codable, Hashable, Sendable {
  /// Largest rotation in degrees (uniform in +-).
  public var rotationDegrees: Double
  /// Largest shear along each axis (uniform in +-).
  public var shear: Double
  /// Scale range along each axis (uniform).
  public var scaleMin: Double
  /// Upper end of the scale range.
  public var scaleMax: Double
  /// Largest translation in pixels along each axis (uniform in +-).
  public var translation: Double
  /// Probability with which each of the four components is applied.
  public var probability: Double

  /// Koch et al.'s settings.
  public static let koch = AffineAugmentation(rotationDegrees: 10, shear: 0.3, scaleMin: 0.8, scaleMax: 1.2, translation: 2, probability: 0.5)
  /// Every component off: the identity.
  public static let none = AffineAugmentation(rotationDegrees: 0, shear: 0, scaleMin: 1, scaleMax: 1, translation: 0, probability: 0)

  /// Custom settings.
  public init(rotationDegrees: Double, shear: Double, scaleMin: Double, scaleMax: Double, translation: Double, probability: Double) {
    self.rotationDegrees = rotationDegrees
    self.shear = shear
    self.scaleMin = scaleMin
    self.scaleMax = scaleMax
    self.translation = translation
    self.probability = probability
  }

  /// The 2x3 matrix mapping output coordinates (relative to the centre) to input coordinates,
  /// drawn from `rng`. Always draws the same number of values, applied or not.
  public func sampleInverse(_ rng: inout SplitMix64) -> (a: Double, b: Double, c: Double, d: Double, tx: Double, ty: Double) {
    let useRotation = rng.chance(probability), rotation = rng.uniform(-rotationDegrees, rotationDegrees) * .pi / 180
    let useShear = rng.chance(probability), shearX = rng.uniform(-shear, shear), shearY = rng.uniform(-shear, shear)
    let useScale = rng.chance(probability), scaleX = rng.uniform(scaleMin, scaleMax), scaleY = rng.uniform(scaleMin, scaleMax)
    let useShift = rng.chance(probability), shiftX = rng.uniform(-translation, translation), shiftY = rng.uniform(-translation, translation)
    // Forward map A = R * Sh * S; x_out = A x_in + t  =>  x_in = A^-1 (x_out - t).
    let theta = useRotation ? rotation : 0
    let (sx, sy) = useScale ? (scaleX, scaleY) : (1, 1)
    let (hx, hy) = useShear ? (shearX, shearY) : (0, 0)
    let (tx, ty) = useShift ? (shiftX, shiftY) : (0, 0)
    let cosT = cos(theta), sinT = sin(theta)
    // Sh = [[1, hx], [hy, 1]]; S = diag(sx, sy).
    let m00 = (cosT * 1 - sinT * hy) * sx, m01 = (cosT * hx - sinT * 1) * sy
    let m10 = (sinT * 1 + cosT * hy) * sx, m11 = (sinT * hx + cosT * 1) * sy
    let det = m00 * m11 - m01 * m10
    let i00 = m11 / det, i01 = -m01 / det, i10 = -m10 / det, i11 = m00 / det
    return (i00, i01, i10, i11, -(i00 * tx + i01 * ty), -(i10 * tx + i11 * ty))
  }

  /// Writes the distorted image as Floats in [0, 1] (ink = 1) into `output` (`size * size`).
  /// Deterministic in `rng`'s state; with every component off, the exact input.
  public func apply(_ input: UnsafeBufferPointer<UInt8>, size: Int, into output: UnsafeMutableBufferPointer<Float>, rng: inout SplitMix64) {
    precondition(input.count >= size * size && output.count >= size * size, "augmentation buffers smaller than \(size)x\(size)")
    let m = sampleInverse(&rng)
    let centre = Double(size - 1) / 2
    let scale = GrayImage.inkScale
    for y in 0..<size {
      let oy = Double(y) - centre
      for x in 0..<size {
        let ox = Double(x) - centre
        let sx = m.a * ox + m.b * oy + m.tx + centre
        let sy = m.c * ox + m.d * oy + m.ty + centre
        let x0 = Int(sx.rounded(.down)), y0 = Int(sy.rounded(.down))
        let fx = Float(sx - Double(x0)), fy = Float(sy - Double(y0))
        @inline(__always) func at(_ xx: Int, _ yy: Int) -> Float {
          (xx >= 0 && xx < size && yy >= 0 && yy < size) ? Float(input[yy * size + xx]) : 0
        }
        let top = at(x0, y0) * (1 - fx) + (fx == 0 ? 0 : at(x0 + 1, y0) * fx)
        let bottom = fy == 0 ? 0 : at(x0, y0 + 1) * (1 - fx) + (fx == 0 ? 0 : at(x0 + 1, y0 + 1) * fx)
        output[y * size + x] = (top * (1 - fy) + bottom * fy) * scale
      }
    }
  }
}
