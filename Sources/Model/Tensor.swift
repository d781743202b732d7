/// A dense Float tensor in contiguous storage: row-major (NCHW for images) unless `layout` says
/// otherwise (see TensorLayout). Copy-on-write: keeping a tensor in a backward cache shares its
/// storage instead of copying it.
public struct Tensor: Sendable, Equatable {
  /// Dimensions, outermost first.
  public var shape: [Int]
  /// `shape.reduce(1, *)` values.
  public var data: [Float]
  /// How `data` is ordered; everything but the backbone's oneDNN layers needs `.plain`.
  public var layout: TensorLayout = .plain

  /// A tensor of zeros.
  public init(zeros shape: [Int]) {
    self.shape = shape
    self.data = [Float](repeating: 0, count: shape.reduce(1, *))
  }

  /// A tensor whose values the caller overwrites in full before reading any (no zero fill:
  /// a kernel's output buffer).
  init(uninitialized shape: [Int]) {
    self.shape = shape
    self.data = [Float](unsafeUninitializedCapacity: shape.reduce(1, *)) { _, count in count = shape.reduce(1, *) }
  }

  /// A tensor over `data`; `data.count` must match the shape.
  public init(shape: [Int], data: [Float]) {
    precondition(data.count == shape.reduce(1, *), "Tensor: \(data.count) values for shape \(shape)")
    self.shape = shape
    self.data = data
  }

  /// Number of elements.
  public var count: Int { data.count }

  /// Size of dimension 0 (the batch).
  public var batch: Int { shape[0] }

  /// Elements per item of the batch.
  public var itemCount: Int { shape.dropFirst().reduce(1, *) }

  /// The same values with another shape of equal size.
  public func reshaped(_ newShape: [Int]) -> Tensor {
    precondition(layout.isPlain, "reshaped: a \(layout) tensor must be made plain first")
    return Tensor(shape: newShape, data: data)
  }

  /// Items `range` of the batch.
  public func items(_ range: Range<Int>) -> Tensor {
    precondition(layout.isPlain, "items: a \(layout) tensor must be made plain first")
    let n = itemCount
    return Tensor(shape: [range.count] + shape.dropFirst(), data: Array(data[(range.lowerBound * n)..<(range.upperBound * n)]))
  }

  /// Items `indices` of the batch, in that order (repeats allowed).
  public func rows(_ indices: [Int]) -> Tensor {
    precondition(layout.isPlain, "rows: a \(layout) tensor must be made plain first")
    let n = itemCount
    var out = [Float](repeating: 0, count: indices.count * n)
    data.withUnsafeBufferPointer { src in
      out.withUnsafeMutableBufferPointer { dst in
        for (r, i) in indices.enumerated() {
          precondition(i >= 0 && i < batch, "row \(i) of a batch of \(batch)")
          (dst.baseAddress! + r * n).update(from: src.baseAddress! + i * n, count: n)
        }
      }
    }
    return Tensor(shape: [indices.count] + shape.dropFirst(), data: out)
  }

  /// Adds the items of `source` to items `indices` of this tensor (the adjoint of `rows`).
  public mutating func addRows(_ source: Tensor, at indices: [Int]) {
    precondition(layout.isPlain && source.layout.isPlain, "addRows: plain tensors only")
    let n = itemCount
    precondition(source.batch == indices.count && source.itemCount == n, "addRows: \(source.shape) into \(shape) at \(indices.count) rows")
    source.data.withUnsafeBufferPointer { src in
      data.withUnsafeMutableBufferPointer { dst in
        for (r, i) in indices.enumerated() {
          let d = dst.baseAddress! + i * n, s = src.baseAddress! + r * n
          for k in 0..<n { d[k] += s[k] }
        }
      }
    }
  }

  /// Concatenation along the batch dimension.
  public static func concatenate(_ parts: [Tensor]) -> Tensor {
    precondition(!parts.isEmpty, "concatenate: no tensors")
    let tail = Array(parts[0].shape.dropFirst())
    for part in parts { precondition(Array(part.shape.dropFirst()) == tail, "concatenate: shapes \(parts.map(\.shape)) differ beyond dimension 0") }
    var data: [Float] = []
    data.reserveCapacity(parts.reduce(0) { $0 + $1.count })
    for part in parts { data.append(contentsOf: part.data) }
    return Tensor(shape: [parts.reduce(0) { $0 + $1.batch }] + tail, data: data)
  }
}

/// A trainable tensor: its value and the gradient accumulated into it by backward passes.
public struct Parameter: Sendable {
  /// PyTorch-style name, e.g. `backbone.features.0.weight`.
  public let name: String
  /// PyTorch layout (OIHW for conv weights, out x in for linear weights).
  public let shape: [Int]
  /// Current value.
  public var value: [Float]
  /// dLoss/dValue, accumulated (`+=`) by backward; zeroed by `ParameterStore.zeroGradients`.
  public var gradient: [Float]
  /// Whether weight decay applies (weights yes; biases and batch-norm parameters no).
  public let decays: Bool
}

/// All parameters of a network in one place, addressed by index: layers keep indices,
/// optimizers and checkpoints walk the list.
public struct ParameterStore: Sendable {
  /// Parameters in creation order.
  public var parameters: [Parameter] = []
  /// State that is saved but not trained (batch-norm running estimates).
  public var buffers: [Buffer] = []

  /// A named non-trainable tensor.
  public struct Buffer: Sendable {
    /// PyTorch-style name, e.g. `backbone.features.1.running_mean`.
    public let name: String
    /// Its values.
    public var value: [Float]
  }

  /// Adds a buffer and returns its index.
  mutating func addBuffer(name: String, value: [Float]) -> Int {
    buffers.append(Buffer(name: name, value: value))
    return buffers.count - 1
  }

  /// Adds a parameter and returns its index.
  mutating func add(name: String, shape: [Int], value: [Float], decays: Bool) -> Int {
    precondition(value.count == shape.reduce(1, *), "parameter \(name): \(value.count) values for shape \(shape)")
    parameters.append(Parameter(name: name, shape: shape, value: value, gradient: [Float](repeating: 0, count: value.count), decays: decays))
    return parameters.count - 1
  }

  /// Sets every gradient to zero (backward passes accumulate).
  public mutating func zeroGradients() {
    for i in parameters.indices {
      parameters[i].gradient.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }
  }

  /// Total number of scalars.
  public var scalarCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

  /// The index of the parameter called `name`.
  public func index(of name: String) -> Int? { parameters.firstIndex { $0.name == name } }
}
