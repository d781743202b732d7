// Eight-lane reductions for the memory-bound loops of batch norm and the convolution bias.
// A plain `s += p[j]` loop is not vectorised (float addition is not reassociated), which made
// these loops a fifth of a 52x52 training step; eight partial sums per pointer fix that. The
// summation order differs from a sequential loop by rounding only.

typealias Lanes = SIMD8<Float>

/// Eight floats from p + j (any alignment).
@inline(__always)
func loadLanes(_ p: UnsafePointer<Float>, _ j: Int) -> Lanes {
  UnsafeRawPointer(p + j).loadUnaligned(as: Lanes.self)
}

/// Writes eight floats to p + j (any alignment).
@inline(__always)
func storeLanes(_ v: Lanes, _ p: UnsafeMutablePointer<Float>, _ j: Int) {
  UnsafeMutableRawPointer(p + j).storeBytes(of: v, as: Lanes.self)
}

/// Σ p[j] and Σ p[j]² over `0..<count`.
@inline(__always)
func sumAndSquares(_ p: UnsafePointer<Float>, count: Int) -> (sum: Float, squares: Float) {
  var s = Lanes(), q = Lanes()
  var j = 0
  while j + 8 <= count {
    let v = loadLanes(p, j)
    s += v
    q += v * v
    j += 8
  }
  var sum = s.sum(), squares = q.sum()
  while j < count {
    sum += p[j]
    squares += p[j] * p[j]
    j += 1
  }
  return (sum, squares)
}

/// Σ p[j] over `0..<count`.
@inline(__always)
func laneSum(_ p: UnsafePointer<Float>, count: Int) -> Float {
  var s = Lanes()
  var j = 0
  while j + 8 <= count {
    s += loadLanes(p, j)
    j += 8
  }
  var sum = s.sum()
  while j < count {
    sum += p[j]
    j += 1
  }
  return sum
}

/// The gradient behind a fused ReLU: g[j] = output[j] > 0 ? dy[j] : 0, written to `g` (which
/// may be `dy`); returns Σ g.
@inline(__always)
func reluMaskedSum(_ dy: UnsafePointer<Float>, output y: UnsafePointer<Float>, into g: UnsafeMutablePointer<Float>, count: Int) -> Float {
  var s = Lanes()
  var j = 0
  while j + 8 <= count {
    let v = loadLanes(dy, j).replacing(with: 0, where: loadLanes(y, j) .<= 0)
    storeLanes(v, g, j)
    s += v
    j += 8
  }
  var sum = s.sum()
  while j < count {
    let v = y[j] > 0 ? dy[j] : 0
    g[j] = v
    sum += v
    j += 1
  }
  return sum
}

/// Σ g[j] and Σ g[j]·(x[j] − mean) over `0..<count`.
@inline(__always)
func sumAndCentredProduct(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, mean: Float, count: Int) -> (sum: Float, product: Float) {
  var s = Lanes(), t = Lanes()
  let mu = Lanes(repeating: mean)
  var j = 0
  while j + 8 <= count {
    let v = loadLanes(g, j)
    s += v
    t += v * (loadLanes(x, j) - mu)
    j += 8
  }
  var sum = s.sum(), product = t.sum()
  while j < count {
    sum += g[j]
    product += g[j] * (x[j] - mean)
    j += 1
  }
  return (sum, product)
}
