import Dispatch

/// Nearest neighbour on raw pixels: similarity = -(squared Euclidean distance) between ink
/// images. Koch et al. 2015 report 21.7% accuracy for it on Lake's runs.
public struct PixelNearestNeighbour: OneShotScorer {
  /// A scorer with no parameters.
  public init() {}

  /// Each image as a vector of ink in [0, 1].
  public func embed(_ pixels: UnsafeBufferPointer<UInt8>, count: Int, size: Int) throws -> [[Float]] {
    let n = size * size
    return (0..<count).map { i in
      [Float](unsafeUninitializedCapacity: n) { out, initialized in
        GrayImage.scaleInk(UnsafeBufferPointer(rebasing: pixels[(i * n)..<((i + 1) * n)]), into: out)
        initialized = n
      }
    }
  }

  /// Negative squared distances.
  public func similarities(queries: [[Float]], support: [[Float]]) throws -> [[Double]] {
    queries.map { q in
      support.map { s in
        var total: Float = 0
        q.withUnsafeBufferPointer { a in
          s.withUnsafeBufferPointer { b in
            for i in 0..<a.count {
              let d = a[i] - b[i]
              total += d * d
            }
          }
        }
        return -Double(total)
      }
    }
  }
}

/// The baseline of Lake's demo: the Modified Hausdorff distance (Dubuisson and Jain 1994)
/// between the sets of ink pixel coordinates, each set shifted by its own mean. Lake et al.
/// report 38.8% error on the 20 runs. Similarity = -distance.
public struct ModifiedHausdorff: OneShotScorer {
  /// The ink pixels of one image, centred, grouped by row for a pruned nearest-point search.
  public struct PointSet: Sendable {
    /// Row coordinate of each point minus the mean row, row-major order.
    let rows: [Double]
    /// Column coordinate of each point minus the mean column.
    let columns: [Double]
    /// Mean row (image coordinates).
    let meanRow: Double
    /// `rowStart[r]..<rowStart[r + 1]`: the points of image row r.
    let rowStart: [Int]
    /// Image side.
    let size: Int
  }

  /// Ink is any pixel with intensity above this (Omniglot's images are binary).
  public var inkThreshold: UInt8 = 127

  /// A scorer with the default ink threshold.
  public init() {}

  /// The centred ink coordinates of each image.
  public func embed(_ pixels: UnsafeBufferPointer<UInt8>, count: Int, size: Int) throws -> [PointSet] {
    (0..<count).map { i in
      var rows: [Double] = []
      var columns: [Double] = []
      var rowStart = [Int](repeating: 0, count: size + 1)
      for r in 0..<size {
        rowStart[r] = rows.count
        for c in 0..<size where pixels[i * size * size + r * size + c] > inkThreshold {
          rows.append(Double(r))
          columns.append(Double(c))
        }
      }
      rowStart[size] = rows.count
      let n = Double(max(rows.count, 1))
      let meanRow = rows.reduce(0, +) / n
      let meanColumn = columns.reduce(0, +) / n
      return PointSet(rows: rows.map { $0 - meanRow }, columns: columns.map { $0 - meanColumn }, meanRow: meanRow, rowStart: rowStart, size: size)
    }
  }

  /// Negative Modified Hausdorff distances; rows are computed on all cores.
  public func similarities(queries: [PointSet], support: [PointSet]) throws -> [[Double]] {
    let result = ConcurrentResults<[Double]>(count: queries.count)
    DispatchQueue.concurrentPerform(iterations: queries.count) { q in
      result.set(q, .success(support.map { -ModifiedHausdorff.distance(queries[q], $0) }))
    }
    return try result.values()
  }

  /// max(mean over a of min_b |a - b|, mean over b of min_a |a - b|), as Lake's demo.
  public static func distance(_ a: PointSet, _ b: PointSet) -> Double {
    guard !a.rows.isEmpty, !b.rows.isEmpty else { return .infinity }
    return max(meanNearest(from: a, to: b), meanNearest(from: b, to: a))
  }

  /// Mean over the points of `a` of the distance to the nearest point of `b`. Exact: scans
  /// b's rows outward from the query's row and stops once the row gap alone exceeds the best.
  static func meanNearest(from a: PointSet, to b: PointSet) -> Double {
    var total = 0.0
    a.rows.withUnsafeBufferPointer { aRows in
      a.columns.withUnsafeBufferPointer { aColumns in
        b.rows.withUnsafeBufferPointer { bRows in
          b.columns.withUnsafeBufferPointer { bColumns in
            b.rowStart.withUnsafeBufferPointer { rowStart in
              let size = b.size
              for i in 0..<aRows.count {
                let qr = aRows[i]
                let qc = aColumns[i]
                // The image row of b closest to the query, in b's centred frame.
                let centre = max(0, min(size - 1, Int((qr + b.meanRow).rounded())))
                var best = Double.infinity
                var up = centre
                var down = centre + 1
                while up >= 0 || down < size {
                  if up >= 0 {
                    let gap = Double(up) - b.meanRow - qr
                    if gap * gap >= best {
                      up = -1
                    } else {
                      for j in rowStart[up]..<rowStart[up + 1] {
                        let dr = bRows[j] - qr
                        let dc = bColumns[j] - qc
                        let d = dr * dr + dc * dc
                        if d < best { best = d }
                      }
                      up -= 1
                    }
                  }
                  if down < size {
                    let gap = Double(down) - b.meanRow - qr
                    if gap * gap >= best {
                      down = size
                    } else {
                      for j in rowStart[down]..<rowStart[down + 1] {
                        let dr = bRows[j] - qr
                        let dc = bColumns[j] - qc
                        let d = dr * dr + dc * dc
                        if d < best { best = d }
                      }
                      down += 1
                    }
                  }
                }
                total += best.squareRoot()
              }
            }
          }
        }
      }
    }
    return total / Double(a.rows.count)
  }
}
