import Episodes
import Foundation

/// Writes a folder of made-up characters, `root/<group>/<class>/<n>.png`: each class is three
/// random strokes; each image of it the same strokes with every point moved by up to 2.5 px
/// and its own pen width, dark ink on white paper at `side` x `side`. Deterministic in `seed`.
func makeGlyphFolder(at root: URL, groups: Int = 3, classes: Int = 5, images: Int = 4, side: Int = 64, seed: UInt64 = 1) throws {
  for g in 0..<groups {
    for c in 0..<classes {
      var shapeRNG = SplitMix64(seed: seed, key: 1, index: UInt64(g * 100 + c))
      let strokes = (0..<3).map { _ in
        (0..<(2 + shapeRNG.below(3))).map { _ in (shapeRNG.uniform(0.15, 0.85) * Double(side), shapeRNG.uniform(0.15, 0.85) * Double(side)) }
      }
      let folder = root.appendingPathComponent("script\(g)/glyph\(c)")
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      for n in 0..<images {
        var rng = SplitMix64(seed: seed, key: 2, index: UInt64((g * 100 + c) * 100 + n))
        var pixels = [UInt8](repeating: 255, count: side * side)
        let radius = rng.uniform(1.2, 2.2)
        for stroke in strokes {
          let points = stroke.map { ($0.0 + rng.uniform(-2.5, 2.5), $0.1 + rng.uniform(-2.5, 2.5)) }
          for (a, b) in zip(points, points.dropFirst()) {
            let steps = Int(max(abs(b.0 - a.0), abs(b.1 - a.1)) * 2) + 1
            for s in 0...steps {
              let t = Double(s) / Double(steps)
              let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
              for yy in max(0, Int(y - radius))...min(side - 1, Int(y + radius)) {
                for xx in max(0, Int(x - radius))...min(side - 1, Int(x + radius)) where (Double(xx) - x) * (Double(xx) - x) + (Double(yy) - y) * (Double(yy) - y) <= radius * radius {
                  pixels[yy * side + xx] = 0
                }
              }
            }
          }
        }
        try Data(try GrayImage(width: side, height: side, pixels: pixels).encodePNG()).write(to: folder.appendingPathComponent("\(n).png"))
      }
    }
  }
}
